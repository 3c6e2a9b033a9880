"""How files travel to and from a node that shares no disk with the driver: paths rewritten to
the node's own folder and back, files placed by content, what a step wrote read back, and
nothing written outside the driver's results folder."""

from __future__ import annotations

from pathlib import Path

from toolkit.backends.files import NodeFolder, Store, receive, relocate
from toolkit.plans.steps import BuildFile, Measure, Sources
from toolkit.results import Record
from toolkit.suite import Case


def test_paths_in_steps_and_records_move_to_the_node_and_back(tmp_path):
    out, node = str(tmp_path / "out"), str(tmp_path / "node" / "run")
    user = "/home/me/models/m.onnx"
    mapping = {out: node, user: f"{node}/shipped/abc/m.onnx"}
    step = Measure(Case("onnx/m", "onnxruntime", "cpu"),
                   sources=Sources(onnx=user, inputs=f"{out}/inputs.npz"))
    moved = relocate(step, mapping)
    assert moved.sources.onnx == f"{node}/shipped/abc/m.onnx"
    assert moved.sources.inputs == f"{node}/inputs.npz" and moved.case == step.case
    build = BuildFile("torch/m", Path(user.replace(".onnx", ".pt")), Path(f"{out}/model.onnx"))
    assert relocate(build, mapping).onnx_out == Path(f"{node}/model.onnx")
    record = Record("m", "onnx", "infer", status="failed",
                    reason=f"child process exited (log: {node}/logs/m.log)",
                    info={"onnx": f"{node}/shipped/abc/m.onnx", "nested": {"a": [f"{node}/x"]}})
    back = relocate(record, {v: k for k, v in mapping.items()})
    assert back.info == {"onnx": user, "nested": {"a": [f"{out}/x"]}}
    assert back.reason == f"child process exited (log: {out}/logs/m.log)"
    assert relocate(f"{out}put/x", mapping) == f"{out}put/x"  # a longer name is another path


def test_files_reach_a_node_by_content_and_what_it_writes_comes_back(tmp_path):
    out = tmp_path / "out"
    (out / "artifacts" / "saved" / "variables").mkdir(parents=True)
    (out / "artifacts" / "saved" / "variables" / "v.data").write_bytes(b"weights")
    (out / "inputs.npz").write_bytes(b"inputs")
    user = tmp_path / "elsewhere" / "model.onnx"
    user.parent.mkdir()
    user.write_bytes(b"onnx bytes")
    store: dict[int, bytes] = {}

    def put(data: bytes) -> int:
        store[len(store)] = data
        return len(store) - 1

    shipped = Store(put).ship([str(out / "artifacts" / "saved"), str(out / "inputs.npz"),
                               str(user), str(tmp_path / "missing.npz")])
    assert len(shipped) == 3 and len(store) == 3
    folder = NodeFolder(tmp_path / "node")
    mapping = folder.place(shipped, str(out), store.__getitem__)
    assert (folder.run / "artifacts/saved/variables/v.data").read_bytes() == b"weights"
    assert Path(mapping[str(user)]).read_bytes() == b"onnx bytes"
    assert Path(mapping[str(user)]).is_relative_to(folder.run / "shipped")
    assert mapping[str(out)] == str(folder.run)

    before = folder.snapshot()
    (folder.run / "logs").mkdir()
    (folder.run / "logs" / "step.log").write_text("ran")
    written = folder.written(before)
    assert written == {"logs/step.log": b"ran"}  # shipped-in files are not sent back
    receive({**written, "../escape.txt": b"no"}, out)
    assert (out / "logs" / "step.log").read_text() == "ran"
    assert not (tmp_path / "escape.txt").exists()


def test_a_file_is_put_into_the_object_store_once_per_content(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"same")
    b = tmp_path / "b.bin"
    b.write_bytes(b"same")
    puts: list[bytes] = []
    store = Store(lambda data: puts.append(data) or len(puts))
    store.ship([str(a)])
    store.ship([str(a), str(b)])
    assert puts == [b"same"]


def test_a_changed_file_of_the_same_size_replaces_the_nodes_copy(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    data = out / "inputs.npz"
    data.write_bytes(b"AAAA")
    folder = NodeFolder(tmp_path / "node")
    puts: dict[int, bytes] = {}

    def put(value: bytes) -> int:
        puts[len(puts)] = value
        return len(puts) - 1

    store = Store(put)
    folder.place(store.ship([str(data)]), str(out), puts.__getitem__)
    data.write_bytes(b"BBBB")  # another run into the same folder, other inputs of one shape
    import os
    os.utime(data, ns=(1, 1))  # a different modification time, as a rewrite gives
    folder.place(store.ship([str(data)]), str(out), puts.__getitem__)
    assert (folder.run / "inputs.npz").read_bytes() == b"BBBB"


def test_a_path_is_rewritten_only_where_it_stands_whole():
    mapping = {"/tmp/out": "/node/run"}
    assert relocate("/var/tmp/out/x.onnx", mapping) == "/var/tmp/out/x.onnx"
    assert relocate("log: /tmp/out/logs/a.log", mapping) == "log: /node/run/logs/a.log"
    assert relocate("'/tmp/out'", mapping) == "'/node/run'"
