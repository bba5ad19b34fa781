"""MkDocs hooks: the API reference's table of scores, read from the registry of scores.

``<!-- registered scores -->`` in a page becomes a table of every score
:func:`sklearn_ntps.scores.registry.registered_scores` holds, so the reference
lists exactly what ``report``, ``select`` and the prescreen read.
"""

MARKER = "<!-- registered scores -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from sklearn_ntps.scores.registry import registered_scores

    rows = ["| name | label | scorer | read by lora-prescreen |", "|---|---|---|---|"]
    for name, entry in registered_scores().items():
        params = entry.scorer.get_params(deep=False)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items()
                          if k not in ("n_permutations", "random_state")
                          and v != type(entry.scorer)().get_params(deep=False).get(k))
        rows.append(f"| `{name}` | {entry.label} | `{type(entry.scorer).__name__}({shown})` | "
                    f"{'yes' if entry.prescreen else ''} |")
    return markdown.replace(MARKER, "\n".join(rows))
