"""Write docs/api.md from the docstrings: ``python docs/gen_api.py``.

The test suite regenerates the page and fails when it differs from the file,
so the reference never drifts from the code.
"""

import inspect
from pathlib import Path

import sklearn_ntps
from sklearn_ntps import (
    datasets,
)
from sklearn_ntps.choice import partitions, probe, scorers, selection
from sklearn_ntps.evidence import report, study
from sklearn_ntps.lora import prescreen
from sklearn_ntps.scores import chance, peers
from sklearn_ntps.states import distributed, extraction

SECTIONS = {
    "Estimators": [sklearn_ntps.HFEmbeddingTransformer, sklearn_ntps.NTPSScorer,
                   sklearn_ntps.NTPSSubspaceProbe, sklearn_ntps.HFLoRAClassifier],
    "Choosing a model and a layer": [sklearn_ntps.LayerSelector, selection.score_layer,
                                     selection.interval, selection.noise_set,
                                     selection.layer_ranges, scorers.on_probe_footing,
                                     scorers.block_layers],
    "Chance levels": [sklearn_ntps.permutation_test, chance.label_permutations],
    "Peer scores": [sklearn_ntps.LogMEScorer, sklearn_ntps.HScoreScorer,
                    sklearn_ntps.TransRateScorer, sklearn_ntps.RankMeScorer,
                    sklearn_ntps.KNNScorer, sklearn_ntps.RidgeProbeScorer, peers.logme,
                    peers.hscore, peers.transrate, peers.rankme, peers.knn_accuracy,
                    peers.ridge_loo_accuracy],
    "Functions": [sklearn_ntps.ntps_score, sklearn_ntps.ntps_curve, sklearn_ntps.compute_moments,
                  sklearn_ntps.pooled_features],
    "Statistics": [sklearn_ntps.Moments, sklearn_ntps.Statistics, sklearn_ntps.MomentAccumulator,
                   extraction.extract_statistics],
    "Data sets": [datasets.load_banking77, datasets.load_clinc150, datasets.load_sms_spam,
                  datasets.load_trec, datasets.load_rotten_tomatoes,
                  datasets.load_twenty_newsgroups, datasets.load_dbpedia,
                  datasets.load_yahoo_answers, datasets.load_mcid, datasets.load_x_topic,
                  datasets.load_dataset, datasets.load_table, datasets.make_token_states],
    "Sharding on Dask": [distributed.sharded_statistics, distributed.plan_shards,
                         distributed.describe_model, distributed.get_client,
                         distributed.local_cluster],
    "Report and study": [report.run_report, report.save_report, scorers.default_scorers,
                         probe.default_probe, partitions.stratified_blocks,
                         partitions.block_partitions, partitions.study_pool,
                         partitions.feature_scale, study.replicate_metrics,
                         study.task_interval, study.summarize, study.rule_a, study.rule_b,
                         study.leave_one_dataset_out, study.paper_protocol,
                         prescreen.run_prescreen, prescreen.recommend],
}
PATH = Path(__file__).with_name("api.md")


def render() -> str:
    out = ["# API reference", "",
           "Generated from the docstrings by `docs/gen_api.py`; the examples run as tests.", ""]
    for section, objects in SECTIONS.items():
        out += [f"## {section}", ""]
        for obj in objects:
            module = obj.__module__.replace("._", ".").split(".")
            where = "sklearn_ntps" if obj.__name__ in sklearn_ntps.__all__ else ".".join(module[:2])
            out += [f"### `{where}.{obj.__name__}`", "", "```python",
                    f"{obj.__name__}{_signature(obj)}", "```", "", inspect.getdoc(obj), ""]
            if inspect.isclass(obj):
                # Methods of the class and of its bases in the package (not scikit-learn's).
                own = [k for k in reversed(obj.__mro__) if k.__module__.startswith("sklearn_ntps")]
                members = {name: m for k in own for name, m in vars(k).items()}
                for name, member in members.items():
                    if inspect.isfunction(member) and not name.startswith("_") and member.__doc__:
                        summary = inspect.getdoc(member).split("\n\n")[0].replace("\n", " ")
                        out.append(f"- `{name}{_signature(member)}`: {summary}")
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def _signature(obj) -> str:
    """The signature, each float of a default at 4 significant digits.

    A default computed at import (a grid of penalties, say) can differ in its
    last bit between processors; the page must read the same on all of them.
    """
    def short(value):
        if isinstance(value, float):
            return float(f"{value:.4g}")
        if isinstance(value, (tuple, list)):
            return type(value)(short(v) for v in value)
        return value

    sig = inspect.signature(obj)
    return str(sig.replace(parameters=[
        p if p.default is p.empty else p.replace(default=short(p.default))
        for p in sig.parameters.values()]))


if __name__ == "__main__":
    PATH.write_text(render())
    print(f"wrote {PATH}")
