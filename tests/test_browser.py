"""The notebooks as a reader sees them, in a real browser: JupyterLab driven by headless Chromium.

A JupyterLab server on 127.0.0.1 (a free port, no token) serves COPIES of the notebooks from a
temporary root, with its settings, runtime and IPython folders there too: the test never writes
into the checkout (the kernel imports ``mmlrepro`` from it, without bytecode). Playwright for
Python drives Debian's Chromium (``/usr/bin/chromium``; Playwright's own browser download is not
used). Checked:

- notebook 01, as committed: the static explorer figure is there and the widget cell shows its
  plain-text fallback, not "Error displaying widget";
- notebook 01, run up to its explorer: moving a slider and switching the loss redraw the figure
  (its image changes), switching to CCL resets w to CCL's 150 and disables MML's extra margin
  sliders, and no widget fails to display;
- notebooks 03 and 05, as committed (not run): their tables and figures render.

Skips, saying why, only when Chromium, Playwright or JupyterLab is missing (``.ci/run``
installs Chromium where it can). About 40 s on two busy cores.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("MMLREPRO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOKS = ("01_margin_geometry.ipynb", "03_table2_architectures.ipynb",
             "05_figure3_negatives.ipynb")
TIMEOUT_MS = 90_000

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run tries it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright for Python is not installed (pip install -e .[dev])")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install -e .[dev])")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """Lab settings for the test: every cell rendered (no windowing), no news or update checks."""
    for name, value in {"notebook-extension/tracker": {"windowingMode": "none"},
                        "apputils-extension/notification": {"fetchNews": "false",
                                                            "checkForUpdates": False}}.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {seconds:.0f} s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> str:
    """The URL of a JupyterLab serving copies of :data:`NOTEBOOKS` under ``notebooks/``."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    (root / "figures").mkdir()  # where the notebooks' "../figures" lands
    for name in NOTEBOOKS:
        shutil.copy2(ROOT / "notebooks" / name, root / "notebooks" / name)
    state = tmp_path_factory.mktemp("lab_state")
    _settings(state / "settings")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONDONTWRITEBYTECODE": "1", "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(state / "runtime"), "JUPYTER_CONFIG_DIR": str(state / "config"),
           "IPYTHONDIR": str(state / "ipython"), "MPLCONFIGDIR": str(state / "matplotlib")}
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--IdentityProvider.token=",
           "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = (state / "server.log").open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/api/status", proc)
        yield url
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    """A headless Chromium page (Debian's Chromium, not Playwright's download)."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("dialog", lambda dialog: dialog.accept())  # "leave with unsaved changes?"
        yield page
        browser.close()


def _open(page, lab: str, name: str):
    """Open ``notebooks/<name>`` alone (a fresh workspace) and wait until its cells and kernel
    are ready; returns the locator of its notebook panel."""
    page.goto(f"{lab}/lab/tree/notebooks/{name}?reset")
    page.wait_for_function(
        """name => { const w = window.jupyterapp?.shell?.currentWidget;
                     return w?.context?.path?.endsWith(name) && w.content.widgets.length > 0
                            && w.sessionContext?.session?.kernel?.status === 'idle'; }""",
        arg=name)
    panel_id = page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
    return page.locator(f"[id='{panel_id}'] .jp-Notebook")


def _cell_index(name: str, needle: str) -> int:
    cells = nbformat.read(ROOT / "notebooks" / name, as_version=4).cells
    return next(i for i, c in enumerate(cells) if c.cell_type == "code" and needle in c.source)


def _assert_no_widget_errors(notebook) -> None:
    assert "Error displaying widget" not in notebook.inner_text()


def _image_src(cell) -> str:
    """The ``src`` of the image in ``cell``'s output (waits for one to appear)."""
    image = cell.locator(".jp-OutputArea-output img").first
    image.wait_for()
    return image.get_attribute("src")


def _wait_new_image(cell, old: str) -> str:
    """Wait until ``cell``'s output image is a loaded one other than ``old``; its ``src``."""
    cell.page.wait_for_function(
        """([cell, old]) => { const img = cell.querySelector('.jp-OutputArea-output img');
                              return img && img.complete && img.src !== old; }""",
        arg=[cell.element_handle(), old])
    return _image_src(cell)


def _slider(cell, label: str):
    return cell.locator(".widget-slider", has=cell.page.locator("label.widget-label",
                                                                 has_text=label))


@pytest.mark.parametrize("name", NOTEBOOKS[1:])
def test_committed_table_notebooks_render_tables_and_figures(page, lab, name):
    notebook = _open(page, lab, name)
    outputs = notebook.locator(".jp-OutputArea-output")
    table = outputs.locator("table").first
    table.wait_for()
    assert table.locator("td").count() > 0
    image = outputs.locator("img").first
    image.wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 100", image.element_handle())
    _assert_no_widget_errors(notebook)


def test_notebook_01_as_committed_shows_the_static_explorer(page, lab):
    name = NOTEBOOKS[0]
    notebook = _open(page, lab, name)
    cells = notebook.locator(".jp-Cell")
    static = cells.nth(_cell_index(name, "plots.explorer_figure("))
    assert _image_src(static).startswith("data:image/png;base64,")
    widget = cells.nth(_cell_index(name, "plots.MarginExplorer("))
    assert "[margin explorer" in widget.inner_text()  # the saved widget's plain-text fallback
    _assert_no_widget_errors(notebook)


def test_notebook_01_explorer_redraws_on_slider_and_loss(page, lab):
    name = NOTEBOOKS[0]
    notebook = _open(page, lab, name)
    index = _cell_index(name, "plots.MarginExplorer(")
    widget = notebook.locator(".jp-Cell").nth(index)
    page.evaluate("""async i => { const app = window.jupyterapp;
                                  const nb = app.shell.currentWidget.content;
                                  nb.activeCellIndex = i;
                                  await app.commands.execute('notebook:run-all-above');
                                  nb.activeCellIndex = i;
                                  await app.commands.execute('notebook:run-cell'); }""", index)
    first = _image_src(widget)

    readout = _slider(widget, "w_neg").locator(".widget-readout")
    assert float(readout.inner_text()) == 700.0  # MML's Gowalla w_neg
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("200")
    page.keyboard.press("Enter")
    moved = _wait_new_image(widget, first)
    assert float(readout.inner_text()) == 200.0

    widget.locator(".widget-dropdown select").select_option(label="CCL")
    ccl = _wait_new_image(widget, moved)
    assert ccl not in (first, moved)
    assert float(readout.inner_text()) == 150.0  # reset to CCL's own paper weight
    margin_m1 = _slider(widget, "margin m1").locator(".widget-readout")
    assert margin_m1.get_attribute("contenteditable") == "false"  # MML-only slider disabled
    assert _slider(widget, "margin m3").locator(".widget-readout").get_attribute(
        "contenteditable") == "true"
    _assert_no_widget_errors(notebook)
