"""One test module per class of docs/security.md: each reproduces the attack against the old behaviour
(fake roots and private lock directories where the real one would be unsafe) and asserts the refusal and
that nothing changed."""
