"""README command 1 as a person uses it: `linli serve` on the embedded default, a browser
login as the demo grid worker, Ctrl-C, and a restart that keeps the data; `linli` commands from
another terminal while it runs, a second server on its data folder refused, a kill -9 that blocks nothing."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from server.services import demo
from server.store.embedded_couch import (
    RECORD_FILE,
    EmbeddedCouch,
    admin_password,
    folder_couch,
    free_port,
    read_record,
)
from tests.browser import launch, screenshot, wait_out_preparing
from tests.log_scan import SERVED_RESIDENTS, keep_output
from tests.street import TINY_PNG, hashed

LINLI = str(Path(sys.executable).parent / "linli")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
NEW_PASSWORD = "a long enough password"  # for `linli user add`


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    output: list[str]  # everything it printed so far: the banner, then what `reader` keeps adding
    reader: threading.Thread

    def ended(self, timeout: float) -> str:
        """Waits for the server to end (by itself, or after a signal); returns all it printed."""
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=timeout)
        return "".join(self.output)


def linli_env(data_dir: Path, **more: str) -> dict[str, str]:
    """The environment of `./dev up` on data_dir: the embedded CouchDB (no COUCHDB_URL), a free port."""
    env = {**os.environ, "LINLI_DATA_DIR": str(data_dir), "LINLI_PORT": str(free_port()),
           "LINLI_NEW_PASSWORD": NEW_PASSWORD, **more}
    if "COUCHDB_URL" not in more:
        env.pop("COUCHDB_URL", None)
    return env


def launch_serve(data_dir: Path, *extra: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([LINLI, "serve", "--residents", str(SERVED_RESIDENTS), "--log-level", "warning", *extra],
                            env=linli_env(data_dir, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def start_serve(data_dir: Path, *extra: str, output: list[str] | None = None, **env: str) -> Served:
    """`linli serve` on data_dir, once it answers; what it prints goes on `output` (a new list if not given)."""
    return wait_until_serving(launch_serve(data_dir, *extra, **env), data_dir, output)


def wait_until_serving(process: subprocess.Popen[str], data_dir: Path, output: list[str] | None = None) -> Served:
    output = [] if output is None else output
    said = len(output)
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = re.search(r"Linli is running: open (\S+)", "".join(output[said:]))
        if match and "Press Ctrl-C" in line:  # the whole banner is out
            url = match.group(1)
            for _ in range(100):  # uvicorn starts listening just after the banner
                try:
                    httpx2.get(url + "healthz", timeout=1)
                except httpx2.HTTPError:
                    time.sleep(0.1)
                    continue
                # Read on while it runs (the journeys' server runs the whole session): a pipe nobody reads fills
                # and stops the server at its next log line.
                reader = threading.Thread(target=output.extend, args=(process.stdout,), daemon=True)
                reader.start()
                return Served(process, url, data_dir, output, reader)
    process.kill()
    raise AssertionError("linli serve did not start:\n" + "".join(output[said:]))


def stop(served: Served) -> str:
    """Ctrl-C; returns all the server printed."""
    served.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output = served.ended(timeout=30)
    keep_output(output)  # scanned for protected plaintext at the end of the run (tests/log_scan.py)
    return output


def pouchdb_server_pids(data_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "pouchdb-server" in cmdline and str(data_dir) in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def served(journey_served: Served) -> Served:
    """README command 1's first start: the journeys' session server (tests/journeys.py), the same `linli serve` on a
    fresh data folder, started once for both (a demo with its year of history takes a minute or more to load on a
    loaded machine); stopped at the end of the session."""
    return journey_served


def demo_password(data_dir: Path) -> str:
    text = (data_dir / "demo-logins.txt").read_text(encoding="utf-8")
    return re.search(r"Demo password for every demo account: (\S+)", text).group(1)


def test_help_explains_itself() -> None:
    out = subprocess.run([LINLI, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("serve", "demo", "user", "validate", "export-schema"):
        assert command in out
    assert "COUCHDB_URL" in out


def test_first_start_loads_the_demo_and_prints_url_and_logins(served: Served) -> None:
    banner = "".join(served.output)
    assert "Loading the demo community" in banner
    assert served.url.startswith("http://127.0.0.1:")
    assert "wangge01" in banner and "shuji1" in banner
    assert "Demo password for every demo account" in banner
    assert "LINLI_TEST_PASSWORD_HASH=1: passwords are hashed at argon2id's least cost, for tests only" in banner
    logins = served.data_dir / "demo-logins.txt"
    assert logins.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert (served.data_dir / "couch").is_dir()  # CouchDB data lives under the data folder


def test_grid_worker_logs_in_in_a_real_browser_and_sees_the_households(served: Served) -> None:
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 412, "height": 915})  # a phone
            page.goto(served.url)
            assert "/login" in page.url
            page.fill("#username", "wangge01")
            page.fill("#password", demo_password(served.data_dir))
            page.click("button[type=submit]:has-text('登录')")
            page.wait_for_url(re.compile(r"/grids/grid:"))
            assert page.url == served.url + "grids/grid:c1-g01"  # wangge01's own grid
            total = int(page.inner_text("#household-total"))
            assert total > 0
            assert page.locator("#households li a.row").count() == min(total, 50)
            screenshot(page, OUTPUT / "grid-worker-households.png", full_page=False)
            # Search as you type (htmx swaps the rows in place, no page load).
            first_address = page.inner_text("#households li a.row .row-title >> nth=0")
            page.evaluate("() => { window.linliTestMark = 'before the search'; }")  # lost if the page reloads
            page.fill("#q", first_address)
            page.wait_for_function("() => document.querySelectorAll('#households li a.row').length === 1")
            assert page.evaluate("() => window.linliTestMark") == "before the search"
            assert page.url == served.url + "grids/grid:c1-g01"
            # Touch targets are large enough for elderly users' fingers.
            height = page.evaluate("document.querySelector('#households a.row').getBoundingClientRect().height")
            assert height >= 44
            page.click("#households a.row")
            page.wait_for_url(re.compile(r"/households/household:"))
            assert page.locator("dl.facts").count() >= 1
        finally:
            browser.close()


def test_the_service_request_loop_in_a_real_browser(served: Served, tmp_path: Path) -> None:
    """Report with a photo at the human window, whistle, arrive, resolve, rate: every step through Chromium."""
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "lamp.png"
    photo.write_bytes(TINY_PNG)
    password = demo_password(served.data_dir)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 412, "height": 915}, permissions=["geolocation"],
                                          geolocation={"latitude": 30.51, "longitude": 114.344})
            page = context.new_page()

            def login(username: str) -> None:
                page.context.clear_cookies()
                page.goto(served.url + "login")
                page.fill("#username", username)
                page.fill("#password", password)
                page.click("button[type=submit]:has-text('登录')")
                page.wait_for_load_state()

            def act(label: str) -> None:
                page.click(f"button:has-text('{label}')")
                page.wait_for_load_state()

            login("wangge01")
            page.goto(served.url + "requests/new")
            page.select_option("select[name=category]", "noise")
            page.wait_for_selector("select[name='attribute.time_of_day']")  # the category's question, by htmx
            page.select_option("select[name='attribute.time_of_day']", "night")
            page.fill("textarea[name=description]", "楼上夜间装修噪音")
            page.click("button:has-text('使用我的位置')")  # the phone's position, into hidden fields
            page.wait_for_function("() => document.querySelector('input[name=lat]').value !== ''")
            page.set_input_files("input[name=photo]", str(photo))
            page.check("input[name=on_behalf]")
            page.fill("input[name=reporter_name]", "李阿姨")
            page.check("input[name=consent]")
            page.click("button:has-text('提交')")
            page.wait_for_url(re.compile(r"/requests/[0-9a-f]{32}$"))
            request_url = page.url
            assert "已接收" in page.inner_text("h1")
            assert "30.51, 114.344" in page.inner_text("dl.facts")  # where the phone was
            assert page.evaluate("document.querySelector('img.photo').naturalWidth") == 1
            act("受理")
            login("shuji1")
            page.goto(request_url)
            page.check("input[value='department:urban_management']")
            act("吹哨")
            assert "已升级" in page.inner_text("h1")
            login("bumen_urban_management")
            page.goto(request_url)
            act("部门已到场")
            act("已解决")
            login("wangge01")
            page.goto(request_url)
            page.check("input[name=rating][value='4']")
            page.select_option("select[name=satisfaction]", "satisfied")
            act("提交评价")
            assert "已办结" in page.inner_text("h1")
            steps = page.locator("#history li strong").all_inner_texts()
            assert steps[:7] == ["提交", "受理", "吹哨", "部门到场", "解决", "评价"]
            screenshot(page, OUTPUT / "service-request-closed.png")
            login("shuji1")
            page.goto(served.url + "dashboard")
            wait_out_preparing(page)  # its index may still be being built
            assert "服务统计" in page.inner_text("h1") and page.locator("svg.chart").count() == 4
        finally:
            browser.close()


def test_a_phone_opens_its_residents_contact_details_with_its_own_non_extractable_key(served: Served) -> None:
    """The offline path of the firewall in Chromium: the phone makes a key the page cannot export, registers
    its public half, receives a grant through the sync gateway, and opens a field with WebCrypto."""
    from playwright.sync_api import sync_playwright

    size = demo.DemoSize.for_residents(400)
    resident = next(d for d in demo.generate(size=size) if d["type"] == "resident" and d["grid"] == "grid:c1-g01"
                    and "phone" in d)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(served.url + "login")
            page.fill("#username", "wangge01")
            page.fill("#password", demo_password(served.data_dir))
            page.click("button[type=submit]:has-text('登录')")
            page.wait_for_url(re.compile(r"/grids/"))
            result = page.evaluate("""async (residentId) => {
                const env = await import('/pwa/crypto/envelope.js');
                const pair = await crypto.subtle.generateKey({name: 'ECDH', namedCurve: 'P-256'}, false,
                                                             ['deriveBits']);
                const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
                const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
                const registered = await (await fetch('/phone-keys', {method: 'POST', body: JSON.stringify(
                    {public_key: env.b64urlEncode(raw), label: 'test phone'}),
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}})).json();
                const grantId = `key_grant:${registered.phone_key.split(':')[1]}:${residentId.split(':')[1]}:contact`;
                const grant = await (await fetch('/sync/main/' + encodeURIComponent(grantId))).json();
                const doc = await (await fetch('/sync/main/' + encodeURIComponent(residentId))).json();
                const key = await env.unwrapGrant(pair.privateKey, grantId, grant);
                const phone = await env.openValue(key, {doc_id: residentId, field: 'phone', tier: 'contact'},
                                                  doc.phone);
                let core = 'locked';
                try {
                  await (await fetch('/sync/main/' + encodeURIComponent(grantId.replace(':contact', ':core')))).json()
                    .then((g) => { if (g._id) core = 'granted'; });
                } catch (e) { core = 'error'; }
                return {phone, sealed: doc.phone.startsWith('enc:'), grants: registered.grants, core,
                        keyExtractable: key.extractable, privateExtractable: pair.privateKey.extractable};
            }""", resident["_id"])
        finally:
            browser.close()
    assert result["sealed"] and result["phone"] == resident["phone"]
    assert result["grants"] > 0 and result["core"] == "locked"  # no approval, no core key
    assert result["keyExtractable"] is False and result["privateExtractable"] is False


# ---------------------------------------------------------------- commands while the server runs

def linli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A `linli` command from another terminal, on the data folder of a server (embedded CouchDB)."""
    return subprocess.run([LINLI, *args], env=linli_env(data_dir), capture_output=True, text=True, timeout=120)


def signs_in(url: str, username: str, password: str) -> bool:
    with httpx2.Client(base_url=url, timeout=60) as client:  # a password hash takes seconds on a busy machine
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        answer = client.post("/login", data={"username": username, "password": password, "csrf_token": form_token})
        return answer.status_code == 303


def test_commands_work_from_another_terminal_while_the_server_runs(served: Served) -> None:
    """The README's set-up steps while `./dev up` runs: each command finds the server's pouchdb-server through the
    data folder and uses it (no second one, no leveldb LOCK error), and the server sees what it wrote at once."""
    database = pouchdb_server_pids(served.data_dir)
    added = linli(served.data_dir, "user", "add", "chen", "--display-name", "陈书记", "--role", "secretary",
                  "--street", demo.STREET_ID, "--community", "community:c1")
    assert added.returncode == 0, added.stderr
    assert signs_in(served.url, "chen", NEW_PASSWORD) and not signs_in(served.url, "chen", "a wrong password")

    issued = linli(served.data_dir, "device-token", "issue", "chen", "--label", "test")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.split()[-1]
    session = httpx2.get(served.url + "sync/_session", headers={"Authorization": f"Bearer {token}"})
    assert session.json()["userCtx"]["name"] == "user:chen"

    keyed = linli(served.data_dir, "open311-key", "12345 hotline")
    assert keyed.returncode == 0, keyed.stderr
    create = served.url + "open311/v2/requests.json"
    assert httpx2.post(create, data={"api_key": keyed.stdout.split()[-1]}).status_code == 400  # key good, no code
    assert httpx2.post(create, data={"api_key": "not-a-key"}).status_code == 403

    verified = linli(served.data_dir, "audit", "verify")
    assert verified.returncode == 0 and "community:c1: intact" in verified.stdout, verified.stdout + verified.stderr
    assert pouchdb_server_pids(served.data_dir) == database  # still the server's own, only


# ---------------------------------------------------------------- a process on the same host (issue 13, finding 10)

def embedded_couch_port(data_dir: Path) -> int:
    """What anyone on the host can see: the pouchdb-server's command line (its port), not its password."""
    (pid,) = pouchdb_server_pids(data_dir)
    arguments = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    return int(arguments[arguments.index("--port") + 1])


def no_cors_allowance(response: httpx2.Response) -> bool:
    return not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_a_process_on_the_host_cannot_rewrite_a_password_hash(served: Served) -> None:
    """The attack of finding 10 on a running `linli serve`: find its CouchDB's port, replace a worker's
    password_hash with one of your own, sign in. Anonymous, with a guessed password, or from a web page of
    another site (even one whose browser holds the credentials) it is refused, and the worker's password stays."""
    couch = f"http://127.0.0.1:{embedded_couch_port(served.data_dir)}/"
    user = f"{couch}linli_accounts/user:wangge01"
    forged = {"_id": "user:wangge01", "_rev": "999-" + "0" * 32, "type": "user", "username": "wangge01",
              "password_hash": hashed("the attacker's password")}
    bulk = {"docs": [forged], "new_edits": False}  # no revision needed: the write wins outright
    for credentials in (None, ("linli", "a guessed password"), ("admin", "admin")):
        assert httpx2.get(user, auth=credentials).status_code == 401
        assert httpx2.put(user, json=forged, auth=credentials).status_code == 401
        assert httpx2.post(f"{couch}linli_accounts/_bulk_docs", json=bulk, auth=credentials).status_code == 401
    password = admin_password(served.data_dir / "couch")
    from_a_page = {"Origin": "http://evil.example"}
    answer = httpx2.post(f"{couch}linli_accounts/_bulk_docs", json=bulk, auth=("linli", password), headers=from_a_page)
    assert answer.status_code == 403 and no_cors_allowance(answer)
    preflight = httpx2.options(user, headers={**from_a_page, "Access-Control-Request-Method": "PUT"})
    assert preflight.status_code == 403 and no_cors_allowance(preflight)

    assert not signs_in(served.url, "wangge01", "the attacker's password")
    assert signs_in(served.url, "wangge01", demo_password(served.data_dir))
    # With the data folder's credentials, Linli's own processes do get in (the refusals above are not an outage).
    owned = httpx2.get(user, auth=("linli", password))
    assert owned.status_code == 200 and owned.json()["password_hash"] != forged["password_hash"]


def test_the_embedded_couch_listens_on_loopback_only_and_never_shows_its_password(served: Served) -> None:
    port = embedded_couch_port(served.data_dir)
    listening = []  # (local address, port) of every listening TCP socket, IPv4 and IPv6, from the kernel's tables
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                listening.append(address)
    assert listening == ["0100007F"], listening  # 127.0.0.1 only, no IPv6 or wildcard socket

    folder = served.data_dir / "couch"
    password = admin_password(folder)
    assert (folder / "admin_password").stat().st_mode & 0o777 == 0o600
    # Not in pouchdb-server's config (a pbkdf2 hash), log, record or database files, nor in what linli serve said.
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "admin_password":
            assert password.encode() not in path.read_bytes(), path
    assert password not in "".join(served.output)
    # Nor in its environment, which holds none of Linli's settings either (LINLI_NEW_PASSWORD is in linli's).
    (pid,) = pouchdb_server_pids(served.data_dir)
    environment = (Path("/proc") / str(pid) / "environ").read_bytes().decode().split("\0")
    assert password not in "\n".join(environment)
    names = sorted(v.split("=")[0] for v in environment if v.startswith(("LINLI_", "COUCHDB_")))
    assert names == ["LINLI_COUCH_PASSWORD_FILE", "LINLI_COUCH_USER"], names


def test_a_second_server_on_the_same_data_folder_is_refused(served: Served, couch_server: EmbeddedCouch) -> None:
    second = subprocess.run([LINLI, "serve", "--no-demo"], env=linli_env(served.data_dir), capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1
    assert (f"the data folder {served.data_dir.resolve()} is already served by linli serve (pid "
            f"{served.process.pid}, its CouchDB at http://127.0.0.1:") in second.stderr, second.stderr
    assert httpx2.get(served.url + "healthz").status_code == 200  # the first one is undisturbed
    # Production CouchDB (COUCHDB_URL): several servers share it, whatever their data folder (scale-out).
    beside = start_serve(served.data_dir, "--no-demo", COUCHDB_URL=couch_server.url,
                         LINLI_DB_PREFIX=f"t_beside_{os.getpid()}_")
    stop(beside)


def test_a_server_starting_during_a_command_waits_for_it(tmp_path: Path) -> None:
    """No server runs, so a command has started its own pouchdb-server (here: this test process, exactly as
    `linli` does); a `linli serve` starting meanwhile waits for it instead of colliding with it."""
    data_dir = tmp_path.resolve()
    process = None
    try:
        with folder_couch(data_dir / "couch", serving=False) as url:
            process = launch_serve(data_dir, "--no-demo")
            assert process.stdout is not None
            ready = select.select([process.stdout], [], [], 30)[0]
            said = process.stdout.readline() if ready else "(nothing in 30 s)"
            assert said.startswith(f"linli: data folder {data_dir}, CouchDB embedded pouchdb-server in "), said
            said = process.stdout.readline()
            assert f"waiting for another linli command (pid {os.getpid()})" in said, said
            assert httpx2.get(url).status_code == 200  # the command's database goes on undisturbed
            assert process.poll() is None
        served = wait_until_serving(process, data_dir)
        assert read_record(data_dir / "couch").owner_pid == served.process.pid
        stop(served)
    finally:
        if process is not None and process.poll() is None:
            process.kill()


def test_a_record_is_believed_only_for_a_live_server_of_this_folder(tmp_path: Path) -> None:
    folder = tmp_path.resolve() / "couch"
    with folder_couch(folder, serving=True) as url:
        record = read_record(folder)
        # The record names the address only; the URL a command gets carries the folder's admin credentials.
        assert record is not None and record.serving
        assert url == record.url.replace("//", f"//linli:{admin_password(folder)}@")
        path = folder / RECORD_FILE
        true = json.loads(path.read_text())
        assert path.stat().st_mode & 0o777 == 0o600
        forgeries = {"another process": {"pid": os.getpid()}, "a reused pid": {"pid_started": true["pid_started"] + 1},
                     "a dead owner": {"owner_started": true["owner_started"] + 1},
                     "another port": {"port": free_port()}}
        for what, change in forgeries.items():
            path.write_text(json.dumps({**true, **change}))
            assert read_record(folder) is None, what
        path.write_text(json.dumps(true))
        assert read_record(folder) == record
        path.chmod(0o644)  # anyone could have written it
        assert read_record(folder) is None
        path.chmod(0o600)
        path.rename(folder / "elsewhere.json")
        path.symlink_to(folder / "elsewhere.json")
        assert read_record(folder) is None
    assert not path.exists()


def test_ctrl_c_stops_both_processes_and_a_restart_keeps_the_data(served: Served) -> None:
    health = httpx2.get(served.url + "healthz").json()
    assert pouchdb_server_pids(served.data_dir), "the embedded pouchdb-server should be running"
    said = len(served.output)
    stop(served)
    stopping = "".join(served.output[said:])  # from Ctrl-C on: what it logged while it ran is other tests' matter
    try:
        assert served.process.returncode == 0, stopping
        assert "Stopped cleanly" in stopping
        assert "Traceback" not in stopping  # e.g. from the index build still running in the background
        assert pouchdb_server_pids(served.data_dir) == []  # no orphan
    finally:
        # The other tests of this module and the journeys' go on with the restarted server, whatever their order and
        # whether the stop was clean (its output on the same list, after the first banner).
        said = len(served.output)
        again = start_serve(served.data_dir, output=served.output)
        served.process, served.url, served.reader = again.process, again.url, again.reader
    assert "Loading the demo community" not in "".join(served.output[said:])  # loaded once only
    # Nothing lost; the restarted server's first sweep may add (requests that fell due while the suite ran).
    assert httpx2.get(again.url + "healthz").json()["documents"] >= health["documents"]


def test_export_schema_prints_the_declaration() -> None:
    out = subprocess.run([LINLI, "export-schema"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["types"]["resident"]["fields"]["id_card"]["tier"] == "contact"


def test_validate_names_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "docs.json"
    path.write_text(json.dumps({"docs": [
        {"_id": "street:s1", "type": "street", "street": "street:s1", "name": "街道"},
        {"_id": "resident:x", "type": "resident", "gender": "robot"},
        {"_id": "ufo:1", "type": "ufo"},
    ]}), encoding="utf-8")
    result = subprocess.run([LINLI, "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "document 1 (resident:x): gender: 'robot' is not one of male, female" in result.stdout
    assert "document 1 (resident:x): name: is required" in result.stdout
    assert "document 2 (ufo:1): type: unknown document type 'ufo'" in result.stdout
    assert "1 valid, 2 invalid" in result.stdout
    path.write_text("{not json", encoding="utf-8")
    broken = subprocess.run([LINLI, "validate", str(path)], capture_output=True, text=True)
    assert broken.returncode == 2 and "cannot read" in broken.stderr


def test_a_crashed_server_leaves_no_orphan_database_and_blocks_nothing(tmp_path: Path) -> None:
    crashed = start_serve(tmp_path, "--no-demo")
    assert pouchdb_server_pids(tmp_path)
    crashed.process.kill()  # SIGKILL: no chance to clean up
    crashed.process.wait()
    deadline = time.monotonic() + 10
    while pouchdb_server_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pouchdb_server_pids(tmp_path) == []  # the kernel sent it SIGTERM (PR_SET_PDEATHSIG)
    assert (tmp_path / "couch" / RECORD_FILE).exists()  # left behind, stale
    added = linli(tmp_path, "user", "add", "chen", "--display-name", "陈书记", "--role", "secretary",
                  "--street", "street:s1")
    assert added.returncode == 0, added.stderr
    assert not (tmp_path / "couch" / RECORD_FILE).exists()  # the command's own, removed when it ended
    again = start_serve(tmp_path, "--no-demo")
    try:
        assert signs_in(again.url, "chen", NEW_PASSWORD)
    finally:
        stop(again)


def test_user_add_creates_an_account_that_can_log_in(couch_server, couch, settings) -> None:
    env = {**os.environ, "COUCHDB_URL": couch_server.url, "LINLI_DB_PREFIX": settings.db_prefix,
           "LINLI_DATA_DIR": str(settings.data_dir), "LINLI_NEW_PASSWORD": "a long enough password"}
    command = [LINLI, "user", "add", "chen", "--display-name", "陈书记", "--role", "secretary",
               "--street", "street:s1", "--community", "community:c1"]
    created = subprocess.run(command, env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    user = couch.accounts.get("user:chen")
    assert user["roles"] == ["secretary"] and user["communities"] == ["community:c1"]
    assert user["password_hash"].startswith("$argon2id$")
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
    short = subprocess.run([*command[:3], "li"] + command[4:], capture_output=True, text=True,
                           env={**env, "LINLI_NEW_PASSWORD": "short"})
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    bad_grid = subprocess.run([*command[:3], "wang", *command[4:], "--grid", "household:x"], env=env,
                              capture_output=True, text=True)
    assert bad_grid.returncode == 2 and "grids: items must be ids of grid documents" in bad_grid.stderr
