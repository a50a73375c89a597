"""Messages: NumPy array helpers, schema versions and type tags, generated code freshness."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from krabgraph.msgs import (
    Array,
    ArrayError,
    JointCommand,
    RobotState,
    array_message,
    message_class,
    schema_version,
    set_array,
    to_numpy,
    type_tag,
)
from krabgraph.msgs.common_pb2 import privileged

MSGS = Path(__file__).resolve().parents[1] / "msgs"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.uint16, np.int32, np.int64])
def test_array_round_trip_keeps_dtype_shape_and_values(dtype):
    values = (np.arange(58 * 87) % 251).astype(dtype).reshape(58, 87)
    msg = RobotState()
    set_array(msg.joints.position, values)
    back = to_numpy(RobotState.FromString(msg.SerializeToString()).joints.position)
    assert back.dtype == np.dtype(dtype).newbyteorder("<")
    assert back.shape == (58, 87)
    np.testing.assert_array_equal(back, values)


def test_array_from_list_is_float64_and_dtype_conversion_applies():
    assert to_numpy(array_message([1, 2.5])).dtype == np.float64
    arr = to_numpy(array_message([1.0, 2.0], dtype=np.float32))
    assert arr.dtype == np.float32 and arr.tolist() == [1.0, 2.0]


def test_big_endian_input_is_stored_little_endian():
    values = np.array([1.5, -2.0], dtype=">f8")
    np.testing.assert_array_equal(to_numpy(array_message(values)), [1.5, -2.0])


def test_truncated_array_bytes_are_reported():
    field = array_message(np.zeros(12))
    field.data = field.data[:-3]
    with pytest.raises(ArrayError, match=r"needs 96 bytes, got 93"):
        to_numpy(field)


def test_unsupported_dtype_is_refused():
    with pytest.raises(ArrayError, match="unsupported dtype complex128"):
        array_message(np.zeros(2, dtype=complex))


def test_empty_array_field_reads_as_empty():
    assert to_numpy(Array()).shape == (0,)


def test_schema_versions_and_tags():
    assert schema_version(RobotState) == 1
    assert type_tag(JointCommand) == b"krabgraph.msgs.JointCommand@1"
    assert message_class("RobotState") is RobotState
    assert message_class("krabgraph.msgs.JointCommand") is JointCommand
    with pytest.raises(KeyError):
        message_class("NoSuchMessage")


def test_every_top_level_message_declares_a_version():
    for mod in ("common_pb2", "robot_pb2", "perception_pb2", "control_pb2"):
        module = importlib.import_module(f"krabgraph.msgs.{mod}")
        for name, desc in module.DESCRIPTOR.message_types_by_name.items():
            if desc.fields_by_name.get("header") is not None:
                cls = getattr(module, name)
                assert schema_version(cls) >= 1, f"{name} has a header but no (schema_version)"


def test_base_state_is_marked_privileged():
    field = RobotState.DESCRIPTOR.fields_by_name["base"]
    assert field.GetOptions().Extensions[privileged] is True
    assert RobotState.DESCRIPTOR.fields_by_name["imu"].GetOptions().Extensions[privileged] is False


def _load_codegen():
    spec = importlib.util.spec_from_file_location("codegen", MSGS / "codegen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_not_stale():
    assert _load_codegen().stale_files() == []


def test_stale_check_detects_an_edited_proto(tmp_path, monkeypatch):
    codegen = _load_codegen()
    copy = tmp_path / "msgs"
    copy.mkdir()
    for p in MSGS.glob("*.proto"):
        (copy / p.name).write_text(p.read_text())
    for p in MSGS.glob("*_pb2.py"):
        (copy / p.name).write_text(p.read_text())
    text = (copy / "control.proto").read_text().replace("string source = 5;", "string source = 5;\n  double vz = 6;")
    (copy / "control.proto").write_text(text)
    monkeypatch.setattr(codegen, "MSGS_DIR", copy)
    assert codegen.stale_files() == ["control_pb2.py"]
