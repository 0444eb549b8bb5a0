"""Hostile pack folders are refused quickly, in little memory, with file:line errors that quote nothing.

Each kind (an alias bomb, a 50 MB file, a symbolic link to ``/etc/passwd``, a link to a 4 GB sparse
file, a 4 GB sparse file in the folder, deep nesting (5,000 levels in flow style, 1,000 in block
style), too many files, a whole file read as one string) is refused by ``fenliu check`` (a real
child process, its CPU time from ``wait4``, its peak memory from /proc) within 5 s and 200 MB; and by a live
reload of a running server (its worker's CPU time and peak memory from /proc), whose old pack keeps
serving and whose log quotes none of the file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from fenliu import PackError, load_pack
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.packs.load import Limits
from fenliu.serving import convert
from grpc_helpers import PACK, ROOT, ServeProcess

SECONDS, MB = 5.0, 200  # CPU seconds and peak memory a refusal may take
WALL = 60.0  # wall-clock seconds: only to catch a hang
PASSWD_LINE = "root:x:0:0:root:/root:/bin/bash"  # content a refusal must never quote


def _bomb(pack: Path, _tmp: Path) -> None:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(8):
        name, prev = chr(98 + i), chr(97 + i)
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    (pack / "bomb.yaml").write_text(text, "utf-8")


def _fifty_mb(pack: Path, _tmp: Path) -> None:
    with (pack / "big.yaml").open("w", encoding="utf-8") as f:
        line = "# " + "x" * 97 + "\n"
        for _ in range(500_000):
            f.write(line)


def _link_passwd(pack: Path, _tmp: Path) -> None:
    (pack / "users.yaml").symlink_to("/etc/passwd")


def _link_huge(pack: Path, tmp: Path) -> None:
    huge = tmp / "huge.bin"
    with huge.open("wb") as f:
        f.truncate(4 << 30)  # sparse: 4 GB long, no disk used
    (pack / "huge.yaml").symlink_to(huge)


def _sparse_inside(pack: Path, _tmp: Path) -> None:
    with (pack / "sparse.yaml").open("wb") as f:
        f.truncate(4 << 30)


def _link_folder_out(pack: Path, _tmp: Path) -> None:
    (pack / "etc").symlink_to("/etc")


def _deep(pack: Path, _tmp: Path) -> None:
    (pack / "deep.yaml").write_text("rules:\n- " + "[" * 5000 + "]" * 5000 + "\n", "utf-8")


def _deep_block(pack: Path, _tmp: Path) -> None:
    text = "".join(" " * i + "k:\n" for i in range(1000)) + " " * 1000 + "k: 1\n"  # 0.5 MB
    (pack / "deep.yaml").write_text(text, "utf-8")


def _many(pack: Path, _tmp: Path) -> None:
    for i in range(1_001):
        (pack / f"f{i:04d}.yaml").write_text("rules: []\n", "utf-8")


def _whole_file_string(pack: Path, _tmp: Path) -> None:
    lines = [PASSWD_LINE] + [f"user{i}:x:{i}:{i}::/home/user{i}:/bin/sh" for i in range(200)]
    (pack / "users.yaml").write_text("\n".join(lines) + "\n", "utf-8")


HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str, str]] = {
    # kind: (make it, the file named, the code)
    "alias-bomb": (_bomb, "bomb.yaml:6", "yaml-limit"),
    "50-mb-file": (_fifty_mb, "big.yaml:10486", "too-large"),
    "link-to-etc-passwd": (_link_passwd, "users.yaml", "outside-pack"),
    "link-to-4-gb-file": (_link_huge, "huge.yaml", "outside-pack"),
    "4-gb-sparse-file": (_sparse_inside, "sparse.yaml:1", "too-large"),
    "link-to-etc-folder": (_link_folder_out, "etc", "outside-pack"),
    "5000-deep-flow": (_deep, "deep.yaml:2", "yaml-limit"),
    "1000-deep-block": (_deep_block, "deep.yaml:65", "yaml-limit"),
    "1001-files": (_many, "wushen", "too-many-files"),
    "whole-file-as-text": (_whole_file_string, "users.yaml:1", "schema"),
}


# ``fenliu check`` that prints its own peak memory last. The peak is read from /proc/self/status
# (VmHWM, the process's own memory), not from rusage, whose maxrss counts the memory of the test
# process that forked it.
_CHECK_AND_PEAK = """
import sys
from fenliu.cli import main
try:
    code = main(sys.argv[1:])
finally:
    sys.stdout.flush()
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(hwm.strip(), flush=True)
sys.exit(code)
"""


def _check(pack: Path) -> tuple[int, str, float, float]:
    """``fenliu check PACK`` in a child process: exit code, output, CPU seconds, peak RSS in MB.

    CPU time, not wall time: on a machine shared with other work the child's start alone can take
    seconds of waiting. A hang is caught by the wall-clock bound of :data:`WALL`.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHECK_AND_PEAK, "check", str(pack)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode("utf-8")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert time.monotonic() - started < WALL
    text, _, peak = out.rpartition("VmHWM:")
    return proc.returncode, text, usage.ru_utime + usage.ru_stime, int(peak.split()[0]) / 1024


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_check_refuses_hostile_pack_quickly_and_quotes_nothing(tmp_path: Path, kind: str) -> None:
    make, where, code = HOSTILE[kind]
    pack = tmp_path / "wushen"
    shutil.copytree(PACK, pack)
    make(pack, tmp_path)
    status, out, seconds, mb = _check(pack)
    assert status == 1, out
    assert "Traceback" not in out, out
    assert any(where in line and f"[{code}]" in line for line in out.splitlines()), out
    assert seconds < SECONDS and mb < MB, (seconds, mb)
    assert PASSWD_LINE not in out and "daemon:" not in out and "user1:" not in out
    assert all(len(line) < 500 for line in out.splitlines())


def test_link_inside_the_pack_is_followed(pack_copy: Path) -> None:
    before = load_pack(pack_copy)
    (pack_copy / "shared").mkdir()
    shutil.move(str(pack_copy / "uplift.yaml"), pack_copy / "shared" / "uplift.txt")
    (pack_copy / "uplift.yaml").symlink_to(Path("shared") / "uplift.txt")
    after = load_pack(pack_copy)
    assert [r.id for r in after.rules] == [r.id for r in before.rules]
    assert after.digest == before.digest


def test_limits_are_parameters_and_name_the_file(pack_copy: Path) -> None:
    with pytest.raises(PackError) as e:
        load_pack(pack_copy, limits=Limits(file_bytes=10_000))
    too_large = {p.file.rsplit("/", 1)[-1] for p in e.value.problems if p.code == "too-large"}
    big = {p.name for p in pack_copy.rglob("*.yaml") if p.stat().st_size > 10_000}  # lexicon/ too
    assert too_large == big and big
    with pytest.raises(PackError) as e:
        load_pack(pack_copy, limits=Limits(total_bytes=50_000))
    assert [p.code for p in e.value.problems] == ["too-large"]
    assert "in all" in e.value.problems[0].message


def _revision(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.TriageServiceStub(channel)
        complaint = convert.complaint_to_proto({"id": "h1", "text": "邻居排水"})
        resp = stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10)
        return str(resp.decision.rule_pack.revision)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_live_reload_refuses_every_hostile_pack_and_keeps_serving(tmp_path: Path) -> None:
    pack = tmp_path / "wushen"
    shutil.copytree(PACK, pack)
    pristine = tmp_path / "pristine"
    shutil.copytree(PACK, pristine)
    sp = ServeProcess(
        ["--rules", str(pack), "--address", "127.0.0.1:0", "--workers", "1", "--no-watch"],
        tmp_path / "serve.log",
    )
    try:
        (worker,) = sp.worker_pids
        serving = load_pack(PACK).revision
        assert _revision(sp.target) == serving
        peak_before = _peak_mb(worker)
        for n, (kind, (make, where, code)) in enumerate(HOSTILE.items(), 1):
            make(pack, tmp_path)
            cpu_before = _cpu_seconds(worker)
            sp.proc.send_signal(signal.SIGHUP)
            (*_, failed) = sp.wait_for("pack_reload_failed", count=n, timeout=WALL)
            seconds = _cpu_seconds(worker) - cpu_before
            assert seconds < SECONDS, (kind, seconds)
            assert any(where in p and f"[{code}]" in p for p in failed["problems"]), (kind, failed)
            assert _revision(sp.target) == serving, kind
            shutil.rmtree(pack)  # back to the good pack for the next kind
            shutil.copytree(pristine, pack)
        assert _peak_mb(worker) - peak_before < MB
    finally:
        assert sp.stop() == 0
    text = sp.log_path.read_text("utf-8")
    assert PASSWD_LINE not in text and "daemon:" not in text and "user1:" not in text
    assert "Traceback" not in text
