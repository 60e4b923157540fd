"""Shared test paths and fixtures. Tests never read ../shared: everything they need is in tests/data or weights/."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CHROMIUM = shutil.which("chromium")  # Debian's package (.ci/run installs it); page-rendering tests skip without it
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                    "(apt-get install -y chromium): the page is not rendered")


def screenshot(page: Path, shot: Path, height: int) -> None:
    """Render the HTML file `page` in headless Chromium (no network use, a fresh profile) to the PNG `shot`,
    1200 pixels wide."""
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={shot.parent / 'chromium-profile'}", f"--screenshot={shot}",
                    f"--window-size=1200,{height}", page.as_uri()], capture_output=True, timeout=120, check=True)


@pytest.fixture(scope="session")
def standin_h5(tmp_path_factory):
    """Stand-in weights (seed 1, sparse) as an HDF5 file, written once per session (about 3 s)."""
    from ssd_np.weights.hdf5 import write_h5
    from ssd_np.weights.standin import standin_weights

    path = tmp_path_factory.mktemp("standin") / "standin1.h5"
    write_h5(standin_weights(1, "sparse"), path, "stand-in, seed 1, profile sparse")
    return path


@pytest.fixture
def run_main(capsys):
    """Run `ssd-np ARGS...` in this process: returns (exit status, stdout, stderr lines). Asserts that nothing
    printed a traceback."""
    from ssd_np.cli.main import main

    def run(*args):
        try:
            status = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            status = e.code
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return status, out, err.splitlines()

    return run
