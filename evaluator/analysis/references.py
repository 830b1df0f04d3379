"""Published reference learning curves a report can overlay, so a reader sees where their task sits.

Pure data (no torch, no matplotlib). Bertsch et al. 2024, "In-Context Learning with Long-Context Models":
Llama-2-7b-80k prompted with many demonstrations (ICL) vs fine-tuned on n training examples, on three intent /
question classification datasets — the numbers of the product brief's (PRODUCT.md) "Reference numbers" table,
nothing added.

"Best ICL" is the best accuracy over the paper's demonstration sweep; the table states no k for it, so it has no
x position: draw it as a horizontal reference or an annotation, never as a point at an invented k.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluator.errors import UserError

__all__ = ["BERTSCH_2024", "CITATION", "ReferenceCurve", "reference", "references", "reference_names"]

CITATION = 'Bertsch et al. 2024, "In-Context Learning with Long-Context Models" (Llama-2-7b-80k, ICL vs fine-tuning)'
BEST_ICL_NOTE = ("best ICL is the best accuracy over the paper's demonstration sweep; no k is stated for it, so it is "
                 "a level (a horizontal reference), not a point at some k")


@dataclass(frozen=True)
class ReferenceCurve:
    """One dataset's published curves: ICL accuracy vs demonstrations, fine-tuning accuracy vs training examples."""

    name: str  # lookup key, lower case: "banking77"
    dataset: str  # as printed: "Banking77"
    model: str  # "Llama-2-7b-80k"
    icl: tuple[tuple[int, float], ...]  # (demonstrations k, accuracy), k ascending
    best_icl: float  # best ICL accuracy; no k stated (see BEST_ICL_NOTE)
    ft: tuple[tuple[int, float], ...]  # (training examples n, accuracy), n ascending
    source: str = "Bertsch 2024"
    citation: str = CITATION
    note: str = BEST_ICL_NOTE

    @property
    def label(self) -> str:
        """The legend label: "Bertsch 2024 Banking77 ICL / FT (Llama-2-7b-80k)"."""
        return f"{self.source} {self.dataset} ICL / FT ({self.model})"


_MODEL = "Llama-2-7b-80k"

BERTSCH_2024: dict[str, ReferenceCurve] = {
    r.name: r
    for r in (
        ReferenceCurve("banking77", "Banking77", _MODEL, icl=((100, 0.586), (1000, 0.867)), best_icl=0.881,
                       ft=((1024, 0.691), (4096, 0.870), (16384, 0.920))),
        ReferenceCurve("clinic150", "Clinic150", _MODEL, icl=((100, 0.588), (1000, 0.859)), best_icl=0.893,
                       ft=((1024, 0.628), (4096, 0.800), (16384, 0.870))),
        ReferenceCurve("trec", "TREC", _MODEL, icl=((100, 0.856), (1000, 0.886)), best_icl=0.900,
                       ft=((1024, 0.951), (4096, 0.970), (16384, 0.973))),
    )
}


def reference_names() -> list[str]:
    return list(BERTSCH_2024)


def reference(name: str) -> ReferenceCurve:
    """One dataset's reference curves by name (case-insensitive; "Banking77", "banking-77" and "banking77" agree)."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    if key not in BERTSCH_2024:
        raise UserError(f"unknown reference curve {name!r} — use one of {', '.join(reference_names())} "
                        f"({CITATION.split(',')[0]})")
    return BERTSCH_2024[key]


def references(names: str | list[str] | tuple[str, ...] | None) -> tuple[ReferenceCurve, ...]:
    """Several by name, in the order given, repeats dropped: a list, or one comma-separated string
    ("banking77,clinic150,trec"); "all" for every dataset; None or empty for none."""
    if not names:
        return ()
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    wanted = [n.strip() for n in names if n and n.strip()]
    if any(n.lower() == "all" for n in wanted):
        return tuple(BERTSCH_2024.values())
    out: list[ReferenceCurve] = []
    for n in wanted:
        r = reference(n)
        if r not in out:
            out.append(r)
    return tuple(out)
