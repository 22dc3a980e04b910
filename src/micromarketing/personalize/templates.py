"""Message templates: the public face of four modules split along their seams.

* storage (:mod:`~micromarketing.personalize.template_store`): message templates (``subject``,
  ``html``, ``text``, ``sms`` parts) and shared blocks (``header.html`` …) as versions in the
  operations store, each compiled and checked before it is stored;
* the sandbox (:mod:`~micromarketing.personalize.sandbox`): Jinja2's immutable sandbox with
  :class:`~jinja2.StrictUndefined`, autoescaping for HTML parts and blocks, a per-render budget of
  operations, time and output size, and the loader that serves stored then shipped blocks;
* the render loop (:mod:`~micromarketing.personalize.render`): compiled templates, each
  recipient's context (customer, segment and persona, offer, recommendations, unsubscribe link)
  and the batch renderer;
* preview and check (:mod:`~micromarketing.personalize.check`): one customer, or every member of a
  segment, rendered without sending anything.

Import from here; the names below are the package's template API.
"""

from __future__ import annotations

from micromarketing.errors import TemplateError, TemplateSecurityError
from micromarketing.personalize.check import CheckReport, check_template, preview_template
from micromarketing.personalize.render import (
    CONTEXT_VARIABLES,
    LIMIT_FAILURES_BEFORE_STOP,
    CompiledTemplate,
    Product,
    RenderedMessage,
    compile_template,
    offers_by_customer,
    product_catalogue,
    recipients_for,
    recipients_table,
    recommendations_by_customer,
    render_for_customers,
    render_rows,
    segment_context,
    token_secret,
)
from micromarketing.personalize.results import TemplateInfo
from micromarketing.personalize.sandbox import default_blocks, make_environment
from micromarketing.personalize.template_store import (
    EXAMPLE_TEMPLATE,
    PARTS,
    add_block,
    add_template,
    get_template,
    install_examples,
    list_templates,
    part_for_file,
)

__all__ = [
    "CONTEXT_VARIABLES",
    "EXAMPLE_TEMPLATE",
    "LIMIT_FAILURES_BEFORE_STOP",
    "PARTS",
    "CheckReport",
    "CompiledTemplate",
    "Product",
    "RenderedMessage",
    "TemplateError",
    "TemplateInfo",
    "TemplateSecurityError",
    "add_block",
    "add_template",
    "check_template",
    "compile_template",
    "default_blocks",
    "get_template",
    "install_examples",
    "list_templates",
    "make_environment",
    "offers_by_customer",
    "part_for_file",
    "preview_template",
    "product_catalogue",
    "recipients_for",
    "recipients_table",
    "recommendations_by_customer",
    "render_for_customers",
    "render_rows",
    "segment_context",
    "token_secret",
]
