"""Deployment: a study's chosen configuration exported in the formats operators deploy (:mod:`.export`,
one module per format in :mod:`.formats`), configuration files read back (:mod:`.config_file`,
:mod:`.deployed`), what applying would change (:mod:`.plan`), drift (:mod:`.verify`), and applying to stay
and undoing it (:mod:`.apply`, :mod:`.rollback`, :mod:`.applications`)."""
