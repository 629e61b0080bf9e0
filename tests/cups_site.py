"""A private CUPS daemon with a PDF printer (cups-pdf), for the tests that print for real.

``cups`` (module-scoped) starts its own cupsd, listening only on a socket in a temporary folder,
with one cups-pdf queue whose output folder is another temporary folder; nothing of the
machine's own CUPS is used. cups-pdf reads a queue's settings from /etc/cups/cups-pdf-<queue>.conf
(the one thing written outside the temporary folder, removed afterwards) and its backend runs
only as root. The queue renders through pdftocairo so the printed PDF keeps its text.

Where cupsd, cups-pdf or root is missing the fixture skips and says which (``why_no_cups()``);
.ci/run installs cups and printer-driver-cups-pdf from Debian's packages. Used by test_print.py
and test_channel_contract.py.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Cups", "cups", "needs_cups", "why_no_cups"]

CUPSD = shutil.which("cupsd") or "/usr/sbin/cupsd"
LPADMIN = shutil.which("lpadmin") or "/usr/sbin/lpadmin"
BACKEND = Path("/usr/lib/cups/backend/cups-pdf")
PPD = Path("/usr/share/ppd/cups-pdf/CUPS-PDF_noopt.ppd")


def why_no_cups() -> str | None:
    if not os.path.exists(CUPSD) or not shutil.which("lp"):
        return "cupsd is not installed (Debian: apt-get install cups printer-driver-cups-pdf; .ci/run does it)"
    if not BACKEND.exists() or not PPD.exists():
        return "cups-pdf is not installed (Debian: apt-get install printer-driver-cups-pdf; .ci/run does it)"
    if not shutil.which("pdftocairo"):
        return "pdftocairo is not installed (Debian: poppler-utils), the PDF printer would lose the text"
    if os.geteuid() != 0:
        return "cups-pdf's backend runs only as root: a private cupsd started by another user cannot use it"
    if not os.access("/etc/cups", os.W_OK):
        return "cups-pdf reads its per-queue settings from /etc/cups, which is not writable here"
    return None


needs_cups = pytest.mark.skipif(why_no_cups() is not None, reason=why_no_cups() or "")


@dataclass
class Cups:
    socket: str
    queue: str
    output: Path
    log: Path

    def printed(self, before: set[Path], timeout: float = 30) -> Path:
        """The PDF cups-pdf writes for the next job (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = sorted(set(self.output.glob("*.pdf")) - before)
            if new and new[0].stat().st_size > 0:
                time.sleep(0.2)     # let cups-pdf finish writing
                return new[0]
            time.sleep(0.1)
        raise AssertionError(f"no PDF printed within {timeout} s; cupsd log:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cups():
    why = why_no_cups()
    if why:
        pytest.skip(why)
    # not under pytest's tmp_path: its parents are private to root, and CUPS filters run as user lp
    root = Path(tempfile.mkdtemp(prefix="rappel-cups-"))
    root.chmod(0o755)
    for name in ("spool", "cache", "state", "log"):
        (root / name).mkdir()
    for name in ("tmp", "pdf"):            # filters (user lp) write temporary files; cups-pdf writes the PDFs
        (root / name).mkdir()
        (root / name).chmod(0o1777)
    sock = root / "cups.sock"
    (root / "cupsd.conf").write_text(textwrap.dedent(f"""\
        Listen {sock}
        LogLevel info
        WebInterface No
        Browsing No
        DefaultAuthType None
        <Location />
          Order allow,deny
          Allow all
        </Location>
        <Policy default>
          <Limit All>
            Order deny,allow
          </Limit>
        </Policy>
        """))
    (root / "cups-files.conf").write_text(textwrap.dedent(f"""\
        ServerRoot {root}
        RequestRoot {root}/spool
        CacheDir {root}/cache
        StateDir {root}/state
        TempDir {root}/tmp
        AccessLog {root}/log/access_log
        ErrorLog {root}/log/error_log
        PageLog {root}/log/page_log
        Printcap {root}/printcap
        User lp
        Group lp
        SystemGroup root
        """))
    daemon = subprocess.Popen([CUPSD, "-f", "-c", str(root / "cupsd.conf"), "-s", str(root / "cups-files.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    queue = f"rappel-test-{uuid.uuid4().hex[:8]}"
    queue_conf = Path(f"/etc/cups/cups-pdf-{queue}.conf")
    try:
        deadline = time.monotonic() + 15
        while not (sock.exists() and stat.S_ISSOCK(sock.stat().st_mode)):
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"cupsd did not start: {daemon.stdout.read().decode(errors='replace')}")
            time.sleep(0.05)
        queue_conf.write_text(f"Out {root}/pdf\nLabel 0\n")
        subprocess.run([LPADMIN, "-h", str(sock), "-p", queue, "-E", "-v", f"cups-pdf:/{queue}", "-P", str(PPD)],
                       check=True, capture_output=True)
        subprocess.run([LPADMIN, "-h", str(sock), "-p", queue, "-o", "pdftops-renderer-default=pdftocairo"],
                       check=True, capture_output=True)
        yield Cups(str(sock), queue, root / "pdf", root / "log" / "error_log")
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        daemon.stdout.close()
        queue_conf.unlink(missing_ok=True)
        Path(f"/var/log/cups/cups-pdf-{queue}_log").unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
