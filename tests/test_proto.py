"""The generated code is fresh, and our contracts match the ones the E2B SDK was built from."""

import ast
import filecmp
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from envd.spec.filesystem import filesystem_pb2
from envd.spec.process import process_pb2

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_not_stale(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path)
    committed = ROOT / "envd" / "spec"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    existing = sorted(
        p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == existing, "envd/spec file set differs from `make proto` output"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert not stale, f"run `make proto`: stale generated files {stale}"


def sdk_descriptor(module: str) -> descriptor_pb2.FileDescriptorProto:
    """The serialized descriptor embedded in the installed e2b SDK's generated code."""
    import e2b

    source = (Path(e2b.__file__).parent / "envd" / module).read_text()
    start = source.index("b'\\n")
    end = source.index("',", start)
    return descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(source[start : end + 1]))


def ours(module) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return proto


def normalise(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    fd.ClearField("options")
    for message in fd.message_type:
        _strip_json_names(message)
    return fd


def _strip_json_names(message) -> None:
    # protoc only records json_name in descriptors when asked to; the wire mapping is the same.
    for field in message.field:
        field.ClearField("json_name")
    for nested in message.nested_type:
        _strip_json_names(nested)


@pytest.mark.parametrize(
    "module, sdk_module",
    [(process_pb2, "process/process_pb.py"), (filesystem_pb2, "filesystem/filesystem_pb.py")],
)
def test_contract_matches_the_sdk(module, sdk_module):
    sdk = normalise(sdk_descriptor(sdk_module))
    if sdk.package == "filesystem":
        # e2b 2.63 already knows EntryInfo.is_symlink (12); upstream envd 0.6.13 never sends it (§3.3).
        entry = next(m for m in sdk.message_type if m.name == "EntryInfo")
        kept = [f for f in entry.field if f.name != "is_symlink"]
        del entry.field[:]
        entry.field.extend(kept)
    assert normalise(ours(module)) == sdk
