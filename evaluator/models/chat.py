"""Whether a model has a chat template, asked before anything is scored (a chat-formatted task needs one).

Read from the tokenizer files only (no weights): a local folder or hub id through `AutoTokenizer` (which reads
`chat_template` from tokenizer_config.json, chat_template.jinja or chat_template.json), a built-in from its converted
folder's marker, else from the registry."""

from __future__ import annotations

from pathlib import Path

from evaluator.errors import UserError
from evaluator.models.load import ModelSource


def no_template_message(model: str, tasks: str = "") -> str:
    """The one line for a model without a chat template asked for chat prompts."""
    which = f" (task {tasks})" if tasks else ""
    return (f"model {model} has no chat template, but prompt_format: chat{which} needs one — use prompt_format: raw, "
            "or a model whose tokenizer has a chat_template (an instruct / chat model)")


def has_chat_template(source: ModelSource, trust_remote_code: bool = False, cache_dir: Path | None = None) -> bool:
    if source.kind == "api":
        return False
    if source.kind == "builtin":
        from evaluator.models import zoo

        folder = zoo.cached_path(source.ref, cache_dir)
        marker = zoo.read_marker(folder) if folder is not None else None
        if marker is not None and isinstance(marker.get("tokenizer"), dict):
            return bool(marker["tokenizer"].get("chat_template"))
        return zoo.get(source.ref).chat_template
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source.ref, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"model {source.spec}: its tokenizer cannot be read ({str(exc).splitlines()[0]})") from None
    return bool(getattr(tok, "chat_template", None))


def check_chat_templates(sources: list[ModelSource], tasks: list[str], trust_remote_code: bool = False,
                         cache_dir: Path | None = None) -> None:
    """Every model that scores chat-formatted tasks has a chat template: else one UserError line, before any work."""
    if not tasks:
        return
    names = ", ".join(tasks)
    for src in sources:
        if src.kind == "api":
            raise UserError(f"model {src.spec} is an API model: prompt_format: chat (task {names}) is not supported "
                            "for API models, whose prompts are sent as text — use prompt_format: raw, or leave it out "
                            "of newer")
        if not has_chat_template(src, trust_remote_code, cache_dir):
            raise UserError(no_template_message(src.spec, names))
