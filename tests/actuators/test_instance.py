import pytest

from actuators import KnobUnavailable, SysRoot
from actuators.instance import DmiAdapter, InstanceTypeKnob
from tests.actuators.conftest import tree_bytes


def _dmi(tmp_path, text):
    p = tmp_path / "sys/devices/virtual/dmi/id/product_name"
    p.parent.mkdir(parents=True)
    p.write_text(text)
    return SysRoot(tmp_path)


def test_dmi_adapter_reads_an_ec2_type(tmp_path):
    assert DmiAdapter(_dmi(tmp_path, "m5.large\n")).current() == "m5.large"


@pytest.mark.parametrize("text", ["Standard PC (i440FX + PIIX, 1996)\n", "KVM\n", "../x\n"])
def test_dmi_adapter_is_none_off_ec2(tmp_path, text):
    assert DmiAdapter(_dmi(tmp_path, text)).current() is None
    assert DmiAdapter(SysRoot(tmp_path / "nothing")).current() is None


def test_knob_is_plan_only_and_never_writes(tmp_path):
    root = _dmi(tmp_path, "m5.large\n")
    before = tree_bytes(tmp_path)
    knob = InstanceTypeKnob(adapter=DmiAdapter(root), choices=("m5.large", "c5.large"))
    assert knob.read() == "m5.large"
    assert "plan only" in knob.available()
    with pytest.raises(KnobUnavailable, match="plan only"):
        knob.apply("c5.large")
    assert tree_bytes(tmp_path) == before


def test_unknown_type_is_refused_first(tmp_path):
    from actuators import OutOfBounds

    knob = InstanceTypeKnob(adapter=DmiAdapter(_dmi(tmp_path, "m5.large\n")), choices=("m5.large",))
    with pytest.raises(OutOfBounds, match="choices"):
        knob.apply("z9.huge")
