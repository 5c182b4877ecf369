"""A LightGBM classifier calibrated on a later time slice, shared by churn and replenishment.

With a ``prior`` (churn's R, F, M), the booster is fitted from the log-odds of a logistic
regression on those columns (LightGBM's ``init_score``) and learns what the rule misses:
where the training cutoffs never saw a value (a shop's first year has no customer gone
for 200 days at its early cutoffs), the score follows the rule's trend instead of the
last leaf's flat value.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from training.baseline import LogisticBaseline
from training.dataset import selection_split, take

#: Columns that are not model inputs: identifiers, timestamps, the label, bookkeeping.
NOT_FEATURES = {
    "customer_id",
    "country",
    "last_purchase_at",
    "expected_next_purchase_at",
    "next_purchase_at",
    "cutoff",
    "churned",
    "repurchased",
    "bought",
    "family",
}
CATEGORICAL = ("segment", "locale", "product_id", "customer_segment", "category")

CALIBRATION_ROWS = 200_000

#: Tree sizes tried by :func:`select_params`, simplest first (a tie keeps the simpler one).
CANDIDATES: tuple[dict, ...] = (
    {"num_leaves": 3, "min_child_samples": 200},
    {"num_leaves": 7, "min_child_samples": 200},
    {"num_leaves": 15, "min_child_samples": 100},
    {"num_leaves": 31, "min_child_samples": 50},
)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a customer feature frame, in a fixed order."""
    return sorted(c for c in frame.columns if c not in NOT_FEATURES)


def model_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``frame`` as LightGBM takes them: categories, or float64 with NaN."""
    return pd.DataFrame(
        {
            c: frame[c].astype("category")
            if c in CATEGORICAL
            else frame[c].to_numpy(dtype="float64", na_value=np.nan)
            for c in columns
        },
        index=frame.index,
    )


class CalibratedClassifier(BaseEstimator):
    """LightGBM classifier of the boolean column ``label``, with Platt calibration on a
    held-out later slice.

    Platt scaling (a logistic regression on the log-odds of the raw score) is strictly
    monotonic, so calibration changes no ranking (isotonic regression would create ties).

    At most ``max_train_rows`` examples (a fixed random sample) are fitted on: at shop scale
    the examples of several cutoffs run into millions, and the validation AUC stops moving
    long before that while the fit time grows with every row (see benchmarks/train.py).

    ``prior``: columns of a :class:`~training.baseline.LogisticBaseline` fitted on the
    same training examples, whose log-odds the booster starts from (none: from a constant).

    ``ignore``: columns that are not inputs of this model though other models use them (the
    next-product model leaves out ``product_id``: a category of tens of thousands of
    products that the trees overfit, while price, popularity and the customer's history
    of the product describe it).

    ``n_jobs``: LightGBM's threads; ``None`` takes OpenMP's default (``OMP_NUM_THREADS``,
    else every core). The test suite sets ``OMP_NUM_THREADS=1``: its two workers share two
    cores, and OpenMP threads that outnumber the cores spin-wait for each other.

    A scikit-learn estimator: hyper-parameters are stored unchanged by ``__init__``, learned
    state ends in ``_``, ``fit`` returns ``self``, and ``get_params`` works on a model loaded
    from the registry too (its hyper-parameters are stored with it).
    """

    def __init__(
        self,
        *,
        label: str,
        n_estimators: int = 100,
        learning_rate: float = 0.15,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        max_train_rows: int | None = 500_000,
        random_state: int = 0,
        n_jobs: int | None = None,
        prior: tuple[str, ...] = (),
        ignore: tuple[str, ...] = (),
    ) -> None:
        self.label = label
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.max_train_rows = max_train_rows
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.prior = prior
        self.ignore = ignore

    def _check(self, name: str, frame: pd.DataFrame) -> None:
        if frame.empty or frame[self.label].nunique() < 2:
            raise ValueError(f"{self.label}: {name} examples need both outcomes (true and false)")

    def _prior(self, train: pd.DataFrame) -> LogisticBaseline | None:
        """The prior fitted on ``train`` (None without ``prior`` columns)."""
        if not self.prior:
            return None
        return LogisticBaseline(label=self.label, columns=tuple(self.prior), name="prior").fit(
            train
        )

    def _booster(
        self, train: pd.DataFrame, features: list[str], prior: LogisticBaseline | None = None
    ) -> lgb.Booster:
        train = take(train, np.ones(len(train), bool), self.max_train_rows, self.random_state)
        init = None if prior is None else prior.log_odds(train)
        classifier = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.random_state,
            # LightGBM's own None is every physical core, whatever OMP_NUM_THREADS says;
            # 0 is OpenMP's default, which honours it
            n_jobs=0 if self.n_jobs is None else self.n_jobs,
            deterministic=True,
            verbose=-1,
        )
        classifier.fit(model_frame(train, features), train[self.label].to_numpy(), init_score=init)
        return classifier.booster_

    def fit(self, train: pd.DataFrame, calibration: pd.DataFrame) -> CalibratedClassifier:
        """Fit on ``train`` examples, then calibrate on the later ``calibration`` examples."""
        self._check("train", train)
        self._check("calibration", calibration)
        self.features_ = [c for c in feature_columns(train) if c not in self.ignore]
        self.prior_ = self._prior(train)
        self.booster_ = self._booster(train, self.features_, self.prior_)
        # two parameters need few examples
        calibration = take(calibration, np.ones(len(calibration), bool), CALIBRATION_ROWS)
        platt = LogisticRegression().fit(
            self._log_odds(calibration).reshape(-1, 1), calibration[self.label].to_numpy()
        )
        self.calibration_ = {
            "slope": float(platt.coef_[0, 0]),
            "intercept": float(platt.intercept_[0]),
        }
        return self

    @classmethod
    def from_parts(
        cls,
        booster: lgb.Booster,
        features: list[str],
        calibration: dict,
        params: dict,
        prior: dict | None = None,
    ) -> CalibratedClassifier:
        """A fitted model from its stored parts: a LightGBM booster, the feature names, the
        calibration, the hyper-parameters (JSON values) and the prior's parts, if any."""
        lists = ("prior", "ignore")  # JSON gives lists
        params = {**params, **{k: tuple(params.get(k) or ()) for k in lists}}
        model = cls(**params)
        model.booster_, model.features_ = booster, list(features)
        model.calibration_ = dict(calibration)
        model.prior_ = None if prior is None else LogisticBaseline.from_parts(prior)
        return model

    def _log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        raw = self.booster_.predict(model_frame(frame, self.features_), raw_score=True)
        raw = np.asarray(raw, dtype=float)
        return raw if self.prior_ is None else raw + self.prior_.log_odds(frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability that ``label`` is true, for each row of ``frame``."""
        return self.calibrate(self._log_odds(frame))

    def raw_scores(self, matrix: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """The raw scores (log-odds before calibration) of a float matrix of ``features_``
        (categories coded as :meth:`categories` lists them): one row without pandas."""
        raw = self.booster_.predict(matrix, raw_score=True, num_threads=num_threads)
        prior = self.prior_
        if prior is None:
            return raw
        columns = [self.features_.index(c) for c in prior.features_]
        return raw + prior.raw_scores(np.asarray(matrix, dtype=float)[:, columns])

    def categories(self) -> list:
        """The levels of each categorical input, in order, as LightGBM coded them."""
        return self.booster_.pandas_categorical or []

    def importance(self) -> pd.Series:
        """Each input's total gain in the booster."""
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.features_)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities from the booster's raw scores (log-odds), through the calibration."""
        c = self.calibration_
        return expit(c["slope"] * np.asarray(raw, dtype=float) + c["intercept"])

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each feature's contribution to each row's score, in calibrated log-odds (TreeSHAP
        values from LightGBM, times the calibration slope); the column ``baseline`` holds
        the rest, so a row sums to the log-odds of :meth:`predict_proba`."""
        raw = self.booster_.predict(model_frame(frame, self.features_), pred_contrib=True)
        c = self.calibration_
        out = pd.DataFrame(
            c["slope"] * np.asarray(raw), columns=[*self.features_, "baseline"], index=frame.index
        )
        out["baseline"] += c["intercept"]
        prior = self.prior_
        if prior is not None:  # the prior's exact linear shares, on the same scale
            shares = prior.contributions(frame)
            out[prior.features_] += c["slope"] * shares[prior.features_].to_numpy()
            out["baseline"] += c["slope"] * shares["baseline"].to_numpy()
        return out


def select_params(
    train: pd.DataFrame,
    *,
    label: str,
    horizon_days: int,
    candidates: tuple[dict, ...] = CANDIDATES,
    max_rows: int = 100_000,
    **params,
) -> tuple[dict, pd.DataFrame]:
    """The candidate tree size with the best ROC-AUC on a later slice of ``train``.

    Candidates are fitted on the cutoffs whose label windows end by the newest training
    cutoff and judged on the newest (:func:`~training.dataset.selection_split`): a choice made
    on data the validation period never sees. At most ``max_rows`` examples are fitted on,
    and as many judged on (fixed random samples). Returns the chosen parameters and a table
    of every candidate's score; with no honest split (cutoffs too close) the last candidate
    is taken unjudged.
    """
    fit, judge = selection_split(train, horizon_days, max_rows)
    if fit.empty or fit[label].nunique() < 2 or judge[label].nunique() < 2:
        chosen = {**params, **candidates[-1]}
        table = pd.DataFrame([{**candidates[-1], "roc_auc": np.nan, "chosen": True}])
        return chosen, table
    ignored = params.get("ignore", ())
    features = [c for c in feature_columns(train) if c not in ignored]
    rows = []
    # the prior is the same for every tree size: fitted once, its log-odds on judge once
    prior = CalibratedClassifier(label=label, **{**params, "max_train_rows": None})._prior(fit)
    start = 0.0 if prior is None else prior.log_odds(judge)
    for candidate in candidates:
        model = CalibratedClassifier(label=label, **{**params, **candidate, "max_train_rows": None})
        raw = model._booster(fit, features, prior).predict(
            model_frame(judge, features), raw_score=True
        )
        raw = raw + start
        rows.append({**candidate, "roc_auc": float(roc_auc_score(judge[label], raw))})
    table = pd.DataFrame(rows)
    best = int(table["roc_auc"].round(4).idxmax())  # first of equals: the simplest
    table["chosen"] = table.index == best
    return {**params, **candidates[best]}, table
