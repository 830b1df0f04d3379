"""The model's chat template as a text renderer for chat-formatted tasks (`prompt_format: chat`).

`ChatTemplate` renders messages exactly as lm-eval 0.4.13's `HFLM.apply_chat_template` does — the tokenizer's own
`apply_chat_template(tokenize=False, add_generation_prompt=True)`, and where the template raises (a template with
no system role, e.g. "System role not supported") the same messages without the system turn — so our prompts are
lm-eval's `--apply_chat_template` prompts character for character. `chat_builder` binds it to a task's
`PromptBuilder`; a model without a chat template is one UserError line, before anything is scored.
"""

from __future__ import annotations

import dataclasses
import logging

from evaluator.errors import UserError
from evaluator.models.chat import no_template_message
from evaluator.tasks.layout import PromptBuilder

log = logging.getLogger("tunecheck")


@dataclasses.dataclass
class ChatTemplate:
    """messages → prompt text through the tokenizer's chat template, as lm-eval renders them (module docstring)."""

    tokenizer: object
    dropped_system: bool = False  # the template refused a system turn, so it was left out (as lm-eval does)

    def __call__(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        import jinja2

        kwargs = dict(tokenize=False, add_generation_prompt=add_generation_prompt,
                      continue_final_message=not add_generation_prompt)
        try:
            return self.tokenizer.apply_chat_template(messages, **kwargs)
        except jinja2.exceptions.TemplateError:
            if not any(m["role"] == "system" for m in messages):
                raise
            if not self.dropped_system:
                log.warning("the chat template refuses a system turn: the system instruction is left out of the "
                            "prompts, as lm-eval does")
            self.dropped_system = True
            return self.tokenizer.apply_chat_template([m for m in messages if m["role"] != "system"], **kwargs)


def chat_builder(builder: PromptBuilder, tokenizer, model: str = "this model") -> PromptBuilder:
    """The builder itself for raw tasks; for a chat task, one bound to the tokenizer's chat template (UserError when
    it has none). A builder already bound is returned as it is."""
    if builder.task.spec.prompt_format != "chat" or builder.chat is not None:
        return builder
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(no_template_message(model, builder.task.name))
    return dataclasses.replace(builder, chat=ChatTemplate(tokenizer))
