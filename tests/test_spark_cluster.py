"""The analytics loop on a real standalone Spark cluster, driven through the CLI, equals DuckDB's.

A master and one worker start on 127.0.0.1 from the pip ``pyspark`` distribution (executors in
their own JVMs).  The CLI runs init → ingest (every kind, transactions twice) → clv fit → profile
→ segment create → discover → members export on the same generated files twice: on the default
DuckDB warehouse (in this process, the reference), and with only
``MICROMARKETING_WAREHOUSE__BACKEND=spark`` and ``MICROMARKETING_WAREHOUSE__SPARK_MASTER=spark://
127.0.0.1:PORT`` set.  On Spark the commands up to discover run one after another in one CLI
process (one driver and one set of executors: a new application per command costs a driver JVM,
a Hive catalog boot and executor JVMs each, minutes on a shared 2-core machine), and the members
export runs in a process of its own, reading the catalog the first one wrote.  Profile rows,
segment members and discovered segment sizes are identical, CLV parameters agree within 1e-6
relative, and the terminal shows no Spark log line.  The Spark tables are read back from their
Parquet files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java"),
]
pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed")

CLI = [sys.executable, "-c", "from micromarketing.cli.main import app; app()"]
KINDS = {
    "products": "products.csv",
    "stores": "stores.csv",
    "customers": "customers.csv",
    "transactions": "transactions.csv",
    "events": "events.jsonl",
    "consent": "consent.csv",
}
RULE = "frequency >= 2 and days_since(last_order_at) < 400"
AS_OF = "2026-06-01"
# What Spark and its JVM print when their output reaches the terminal.
SPARK_NOISE = ("WARN ", "INFO ", "log4j", "NativeCodeLoader", "[Stage ", "incubator", "SparkContext", "Ivy")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spark://127.0.0.1:PORT`` of a master and one 2-core worker, stopped by PID afterwards."""
    home = Path(pyspark.__file__).parent
    base = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    started: list[subprocess.Popen[bytes]] = []
    try:
        master_log = base / "master.log"
        with master_log.open("wb") as out:
            master = subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(port), "--webui-port", "0"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        started.append(master)
        _wait_for(master_log, "I have been elected leader", master)
        worker_log = base / "worker.log"
        with worker_log.open("wb") as out:
            worker = subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                 "--cores", "2", "--memory", "2g", "--webui-port", "0", "--work-dir", str(base / "work")],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        started.append(worker)
        _wait_for(worker_log, "Successfully registered with master", worker)
        yield url
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# Runs CLI commands one after another in one interpreter, as a user's shell would run them one by
# one: the same Typer app and arguments, but one Spark driver (and one set of executors) for the
# whole tour instead of one per command.  Each command's exit code follows its stdout.
SESSION = """
import json, sys
from micromarketing.cli.main import app
for args in json.loads(sys.argv[1]):
    try:
        app(args, prog_name="micromarketing")
    except SystemExit as done:
        code = done.code or 0
    sys.stdout.write(f"\\n@@exit {code}\\n")
    sys.stdout.flush()
"""


def _spark_session_run(env: dict[str, str], commands: list[list[str]]) -> tuple[list[str], str]:
    """Run ``commands`` through the CLI in one process; returns each command's stdout and the stderr."""
    done = subprocess.run(
        [sys.executable, "-c", SESSION, json.dumps(commands)], env=env, capture_output=True, text=True,
        timeout=900,
    )
    parts = done.stdout.split("\n@@exit ")
    outputs, codes = [parts[0]], []
    for part in parts[1:]:
        code, _, rest = part.partition("\n")
        codes.append(int(code))
        outputs.append(rest)
    assert done.returncode == 0 and codes == [0] * len(commands), f"{codes}\n{done.stdout}\n{done.stderr}"
    return outputs[: len(commands)], done.stderr


def _cli(env: dict[str, str], *args: str) -> str:
    """Run one CLI command in its own process; returns stdout + stderr, failing on a non-zero exit."""
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)}:\n{output}"
    return output


def _tour_commands(workspace: Path, data: Path) -> list[list[str]]:
    """init → ingest every kind (transactions twice: a re-run) → clv fit → profile → segment create
    → discover; ``--json`` where the test reads the answer."""
    commands = [["init", str(workspace)]]
    commands += [["ingest", kind, str(data / name)] for kind, name in KINDS.items()]
    commands.append(["ingest", "transactions", str(data / "transactions.csv")])
    commands.append(["clv", "fit", "--as-of", AS_OF, "--json"])
    commands.append(["profile", "--as-of", AS_OF])
    commands.append(["segment", "create", "regulars", "--rule", RULE])
    commands.append(["segment", "discover", "--k", "3", "--seed", "0", "--json"])
    return commands


FIT, DISCOVER = 8, 11  # positions of `clv fit` and `segment discover` in the tour


def _export(workspace: Path) -> list[str]:
    return ["segment", "members", "regulars", "--out", str(workspace / "regulars.parquet")]


def _duckdb_tour(workspace: Path, data: Path) -> dict[str, Any]:
    """The reference: the same commands on the default DuckDB warehouse, in this process."""
    from typer.testing import CliRunner

    from micromarketing.cli.main import app

    runner = CliRunner()
    outputs = []
    for args in [*_tour_commands(workspace, data), _export(workspace)]:
        done = runner.invoke(app, args, env={"MICROMARKETING_WORKSPACE": str(workspace)})
        assert done.exit_code == 0, f"{args}: {done.output}"
        outputs.append(done.stdout)
    return {"fit": json.loads(outputs[FIT]), "discovered": json.loads(outputs[DISCOVER])}


def _rows(table: Any) -> list[tuple]:
    """Rows as sorted tuples: floats to 9 digits, timestamps as naive UTC."""
    out = []
    for row in table.to_pylist():
        values = []
        for value in row.values():
            if isinstance(value, float):
                value = None if math.isnan(value) else round(value, 9)
            elif isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            values.append(value)
        out.append(tuple(values))
    return sorted(out, key=repr)


def _assert_same_rows(got: list[tuple], expected: list[tuple]) -> None:
    """Equal rows; floats within 1e-6 relative (parallel sums differ in their last bits, and the
    CLV columns carry that through the fitted model)."""
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        assert len(row) == len(want)
        for value, wanted in zip(row, want, strict=True):
            if isinstance(wanted, float) and isinstance(value, float):
                assert value == pytest.approx(wanted, rel=1e-6, abs=1e-9), (row, want)
            else:
                assert value == wanted, (row, want)


def _numbers(fit: dict[str, Any]) -> dict[str, float]:
    """The BG/NBD and Gamma-Gamma parameters of a ``clv fit --json`` answer, flattened by path."""
    found: dict[str, float] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}")
        elif isinstance(value, float):
            found[path] = value

    walk({"params": fit["params"], "gamma_gamma": fit["gamma_gamma"]["params"]}, "")
    return found


def test_cli_loop_on_a_standalone_cluster_equals_duckdb(cluster: str, tmp_path: Path) -> None:
    import duckdb

    from micromarketing.datasets import generate

    data = tmp_path / "data"
    generate(data, customers=200, seed=5)
    duck = _duckdb_tour(tmp_path / "duck", data)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROMARKETING_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    workspace = tmp_path / "spark"
    env |= {
        "MICROMARKETING_WAREHOUSE__BACKEND": "spark",
        "MICROMARKETING_WAREHOUSE__SPARK_MASTER": cluster,
        "MICROMARKETING_WORKSPACE": str(workspace),
        # This cluster's executors live for one command on a few hundred rows: the JIT's
        # optimising tier would spend more CPU compiling than the work takes (as the README's
        # small-data advice says), on a machine whose two cores also run the driver.
        "MICROMARKETING_WAREHOUSE__SPARK_CONF": json.dumps(
            {"spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
        ),
    }
    outputs, stderr = _spark_session_run(env, _tour_commands(workspace, data))
    # The members are exported by a new process: a second driver reads the catalog the first wrote.
    export = _cli(env, *_export(workspace))

    for output in [*outputs, stderr, export]:
        assert not [line for line in output.splitlines() if any(n in line for n in SPARK_NOISE)], output

    with duckdb.connect(str(tmp_path / "duck" / "warehouse.duckdb"), read_only=True) as con:
        duck_profiles = con.sql("SELECT * FROM profiles").to_arrow_table()
    tables = workspace / "spark-warehouse" / "micromarketing.db"
    spark_profiles = pq.read_table(tables / "profiles").select(duck_profiles.column_names)
    assert duck_profiles.num_rows == 200
    _assert_same_rows(_rows(spark_profiles), _rows(duck_profiles))

    on_duck = set(pq.read_table(tmp_path / "duck" / "regulars.parquet")["customer_id"].to_pylist())
    on_spark = set(pq.read_table(workspace / "regulars.parquet")["customer_id"].to_pylist())
    assert on_duck and on_spark == on_duck

    duck_params, spark_params = _numbers(duck["fit"]), _numbers(json.loads(outputs[FIT]))
    assert duck_params and duck_params.keys() == spark_params.keys()
    for key, value in duck_params.items():
        assert spark_params[key] == pytest.approx(value, rel=1e-6), key

    def sizes(found: dict[str, Any]) -> list[tuple[str, int]]:
        return [(s["name"], s["size"]) for s in found["segments"]]

    assert len(sizes(duck["discovered"])) == 3
    assert sizes(json.loads(outputs[DISCOVER])) == sizes(duck["discovered"])
