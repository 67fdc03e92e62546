"""Amazon Pay's Instant Payment Notifications: verify the SNS message, then reconcile what it names.

Section 10 of docs/amazon-pay-api.md: an IPN is only a hint. Once its signature checks out, the
claims waiting on the charge permission or charge it names are settled through the same path
a buyer's refresh takes (Get Checkout Session / Get Charge); the message's content decides
nothing. Amazon posts here without our cookie, so the CSRF check exempts exactly this endpoint;
the SNS signature takes its place.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from amazonpay.errors import NotificationError
from amazonpay.notifications import parse_notification
from storefront.web import shop

bp = Blueprint("notifications", __name__)

logger = logging.getLogger(__name__)

# Claims one message may settle inline; anything past it is left to `flask reconcile`.
MAX_CLAIMS_PER_NOTIFICATION = 5


def _answer(status: int) -> Response:
    return Response(
        "OK\n" if status == 200 else "invalid notification\n", status, mimetype="text/plain"
    )


@bp.post("/notifications/amazon-pay")
def amazon_pay() -> Response:
    services = shop()
    try:
        notification = parse_notification(request.get_data(cache=False))
        services.notifications.verify(notification)
    except NotificationError as exc:
        # 400 tells SNS not to retry (section 10); the reason stays in our log.
        logger.warning("amazon pay notification refused: %s", exc)
        return _answer(400)
    message = notification.message
    if message is None:  # a (un)subscription confirmation, or not an Amazon Pay message
        logger.info("amazon pay notification ignored: type=%s", notification.type)
        return _answer(200)
    logger.info(
        "amazon pay notification: object_type=%s object_id=%s notification_type=%s",
        message.object_type,
        message.object_id,
        message.notification_type,
    )
    ids = [value for value in (message.object_id, message.charge_permission_id) if value]
    try:
        report = services.returns.reconcile_objects(ids, limit=MAX_CLAIMS_PER_NOTIFICATION)
    except SQLAlchemyError as exc:
        # The message was genuine; the periodic `flask reconcile` settles these claims later.
        logger.warning("amazon pay notification not reconciled: %s", type(exc).__name__)
    else:
        if report.results:
            logger.info("amazon pay notification %s", report.summary())
    return _answer(200)
