"""Champions travel: each predicts in a fresh environment built only from its own
requirements (`mlflow models predict --env-manager uv`: a new virtual environment, no
nextbest installed, the code shipped in the model), `spark_udf` on local[2] gives the
scores of `nextbest score`, and the registry says what each model is and which code made
it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from test_cli import nextbest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("churn", "clv", "replenishment", "next-product")


@pytest.fixture(scope="module")
def registry(world):
    from training import registry as store

    store.configure(world / "mlruns")
    return mlflow.MlflowClient()


def _model_folder(name: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(f"models:/nextbest-{name}@champion"))


def test_every_champion_carries_its_code_requirements_signature_and_example(registry):
    for name in NAMES:
        folder = _model_folder(name)
        meta = mlflow.models.Model.load(folder / "MLmodel")
        assert meta.signature is not None and meta.signature.inputs.input_names(), name
        assert "customer_id" in meta.signature.inputs.input_names()
        assert (folder / "serving_input_example.json").is_file()
        code = folder / "code"
        for package in ("cdp", "features", "training"):
            assert (code / package / "__init__.py").is_file(), (name, package)
        assert not (folder / "uv.lock").exists()  # restored from requirements, not this project
        wanted = (folder / "requirements.txt").read_text()
        for requirement in ("lightgbm==", "pandas==", "lifetimes==", "mlflow", "setuptools<81"):
            assert requirement in wanted, (name, requirement)
        described = registry.get_registered_model(f"nextbest-{name}").description
        assert described and "Input:" in described
        version = registry.get_model_version_by_alias(f"nextbest-{name}", "champion")
        tags = registry.get_run(version.run_id).data.tags
        assert tags["nextbest.version"]
        assert len(tags.get("mlflow.source.git.commit", "")) == 40


def test_every_champion_predicts_in_a_fresh_environment_from_its_own_requirements(
    registry, world, tmp_path
):
    """`mlflow models predict --env-manager uv` builds a virtual environment from the
    model's python_env.yaml and requirements.txt alone (uv's cache keeps it quick) and
    predicts there, outside this checkout: the same numbers as here."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(uv).parent), str(Path(sys.executable).parent),
                                 os.environ["PATH"]]),
        "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
        "MLFLOW_ENV_ROOT": str(tmp_path / "envs"),
        "PYTHONPATH": "",  # nothing of this checkout on the path
    }  # fmt: skip
    customers = pd.read_parquet(world / "features" / "customers.parquet").head(40)
    for name in NAMES:
        folder = _model_folder(name)
        if name in ("churn", "clv"):  # real snapshot rows, times and all
            frame = customers
            body = {"dataframe_split": json.loads(frame.to_json(orient="split", date_format="iso"))}
            source = tmp_path / f"{name}.json"
            source.write_text(json.dumps(body))
        else:  # the model's own example (candidate and pair rows)
            source = folder / "serving_input_example.json"
            split = json.loads(source.read_text())["dataframe_split"]
            frame = pd.DataFrame(split["data"], columns=split["columns"])
        out = tmp_path / f"{name}.out.json"
        done = subprocess.run(
            [str(Path(sys.executable).with_name("mlflow")), "models", "predict", "-m",
             f"models:/nextbest-{name}@champion", "-i", str(source), "-t", "json",
             "--env-manager", "uv", "-o", str(out)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        theirs = pd.DataFrame(json.loads(out.read_text())["predictions"])
        mine = mlflow.pyfunc.load_model(f"models:/nextbest-{name}@champion").predict(frame)
        number = mine.select_dtypes("number").columns
        assert len(theirs) == len(mine) > 0 and len(number) > 0
        np.testing.assert_allclose(
            theirs[number].to_numpy(float), mine[number].to_numpy(float), rtol=1e-9, atol=0,
            equal_nan=True, err_msg=name,
        )  # fmt: skip


SPARK_UDF = """
import sys
import mlflow
import pandas as pd
from pyspark.sql import SparkSession

uri, snapshot, out = sys.argv[1:]
mlflow.set_tracking_uri(uri)
spark = SparkSession.builder.master("local[2]").appName("spark-udf").getOrCreate()
customers = pd.read_parquet(f"{snapshot}/customers.parquet")
model = mlflow.pyfunc.load_model("models:/nextbest-churn@champion")
names = model.metadata.signature.inputs.input_names()
frame = customers[names].copy()
for column in frame.columns:  # Spark takes microseconds, naive (the model reads them as UTC)
    if str(frame[column].dtype).startswith("datetime64"):
        naive = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        frame[column] = naive.astype("datetime64[us]")
df = spark.createDataFrame(frame)
udf = mlflow.pyfunc.spark_udf(
    spark, "models:/nextbest-churn@champion", env_manager="local",
    result_type="customer_id string, churn_probability double",
)
scored = df.select(udf(*[df[c] for c in names]).alias("p")).select("p.*")
scored.toPandas().to_parquet(out)
spark.stop()
"""


def test_spark_udf_scores_equal_nextbest_score(registry, world, small_world_dir, tmp_path):
    scored = nextbest(
        "score", "--features", str(world / "features"), "--data", str(small_world_dir),
        "--mlruns", str(world / "mlruns"), "--out", str(tmp_path / "scores"),
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    done = subprocess.run(
        [sys.executable, "-c", SPARK_UDF, mlflow.get_tracking_uri(), str(world / "features"),
         str(tmp_path / "udf.parquet")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    udf = pd.read_parquet(tmp_path / "udf.parquet")
    cli = pd.read_parquet(tmp_path / "scores" / "churn.parquet")
    joined = cli.merge(udf, on="customer_id", suffixes=("", "_udf"))
    assert len(joined) == len(cli) > 0  # every customer `score` scored (consent in force)
    np.testing.assert_allclose(
        joined["churn_probability"], joined["churn_probability_udf"], rtol=1e-9
    )
