"""Personalisation: sandboxed message templates, product recommendations and the next best offer.

Reached through the Workspace's sub-facades (``personalize/service.py``)::

    ws.templates.add("winback", ["winback.subject", "winback.html", "winback.txt"])
    ws.recommender.fit()
    for msg in ws.templates.render("winback", "lapsed_runners"):   # a segment name or ids
        ...  # msg.customer_id, msg.subject, msg.html, msg.text, msg.sms
    ws.recommender.recommend(["C0000001"], k=5)   # DataFrame(customer_id, rank, product_id, score)
    ws.offers.next_best(["C0000001"])             # DataFrame(customer_id, offer, expected_margin, ...)
"""

from micromarketing.personalize.offers import (
    OfferInfo,
    add_offer,
    eligible_customers,
    fit_propensity,
    list_offers,
    next_best_offer,
)
from micromarketing.personalize.recommend import (
    Evaluation,
    FitResult,
    evaluate,
    fit_recommender,
    recommend_for,
)
from micromarketing.personalize.templates import (
    CheckReport,
    CompiledTemplate,
    RenderedMessage,
    TemplateError,
    TemplateInfo,
    TemplateSecurityError,
    add_block,
    add_template,
    check_template,
    compile_template,
    install_examples,
    list_templates,
    preview_template,
    render_for_customers,
)

__all__ = [
    "CheckReport",
    "CompiledTemplate",
    "Evaluation",
    "FitResult",
    "OfferInfo",
    "RenderedMessage",
    "TemplateError",
    "TemplateInfo",
    "TemplateSecurityError",
    "add_block",
    "add_offer",
    "add_template",
    "check_template",
    "compile_template",
    "eligible_customers",
    "evaluate",
    "fit_propensity",
    "fit_recommender",
    "install_examples",
    "list_offers",
    "list_templates",
    "next_best_offer",
    "preview_template",
    "recommend_for",
    "render_for_customers",
]
