"""Griffe extension for the docs site (mkdocs.yml): Sphinx roles in docstrings as links.

The docstrings follow scikit-learn's numpydoc conventions, cross-references included:
``:class:`~sklearn_ntps.Moments```. mkdocstrings renders Markdown, where such a role would show
as the raw text, so this turns each one into a mkdocs-autorefs cross-reference: a link where its
target is on the site, plain code where it is not (a private helper, another package), never a
build warning. ``~`` keeps the last name only, as in Sphinx; a bare name is looked up from the
object whose docstring it is in.
"""

from __future__ import annotations

import functools
import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([\w.]+)`")


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(functools.partial(_autoref, obj),
                                               obj.docstring.value)


def _objects(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _autoref(obj, match):
    short, target = match.groups()
    title = target.lstrip(".").rsplit(".", 1)[-1] if short else target
    return (f'<autoref identifier="{_qualify(obj, target)}" optional>'
            f"<code>{title}</code></autoref>")


def _qualify(obj, target):
    """The full path Sphinx would find ``target`` at, from the docstring's object."""
    if target.startswith("."):  # relative to the package of the object's module
        dots = len(target) - len(target.lstrip("."))
        return f"{obj.module.path.rsplit('.', dots)[0]}.{target[dots:]}"
    head, _, rest = target.partition(".")
    scope = obj
    while scope is not None:
        if head in scope.members:
            member = scope.members[head]
            found = member.target_path if member.is_alias else member.path
            return f"{found}.{rest}" if rest else found
        scope = scope.parent
    return target  # a full path already: sklearn_ntps.Moments, sklearn.utils.Bunch
