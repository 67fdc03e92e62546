"""Amazon Pay's Instant Payment Notifications: verify the SNS message, then reconcile what it names.

Section 10 of docs/amazon-pay-api.md: an IPN is only a hint. Once its signature checks out, the
claims waiting on the charge permission or charge it names are settled through the same path
a buyer's refresh takes (Get Checkout Session / Get Charge); the message's content decides
nothing. A verified SubscriptionConfirmation is confirmed by a GET on its SubscribeURL. Amazon
posts here without our cookie, so the CSRF check exempts exactly this endpoint; the SNS
signature takes its place.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from amazonpay.errors import NotificationError
from amazonpay.notifications import Notification, confirm_subscription, parse_notification
from storefront.web import shop

bp = Blueprint("notifications", __name__)

logger = logging.getLogger(__name__)

# Claims one message may settle inline; anything past it is left to `flask reconcile`.
MAX_CLAIMS_PER_NOTIFICATION = 5
# Seconds for SNS to answer a confirmation; a sync worker waits this long at most.
SUBSCRIBE_TIMEOUT = 5.0

_BODIES = {200: "OK\n", 400: "invalid notification\n", 503: "try again later\n"}


def _answer(status: int) -> Response:
    return Response(_BODIES[status], status, mimetype="text/plain")


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
    if notification.type == "SubscriptionConfirmation":
        return _confirm(notification)
    if notification.type == "UnsubscribeConfirmation":
        # Nothing to do: SNS stops sending once the unsubscription is confirmed.
        logger.info(
            "amazon pay unsubscribe confirmation: topic=%s message_id=%s",
            notification.topic_arn,
            notification.message_id,
        )
        return _answer(200)
    message = notification.message
    if message is None:  # a Notification that is not an Amazon Pay message
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


def _confirm(notification: Notification) -> Response:
    """GET the SubscribeURL that `verify` checked (signature, https on an SNS host or the
    trusted simulator). Only the topic and the URL's host are logged: its query holds the Token."""
    url = notification.subscribe_url or ""
    host = urlsplit(url).hostname
    try:
        confirm_subscription(url, timeout=SUBSCRIBE_TIMEOUT)
    except NotificationError as exc:
        # 503, not 400: SNS delivers the confirmation again later (section 10), so a passing
        # network fault does not leave the subscription unconfirmed for good.
        logger.warning(
            "amazon pay subscription not confirmed: topic=%s message_id=%s: %s",
            notification.topic_arn,
            notification.message_id,
            exc,
        )
        return _answer(503)
    logger.info(
        "amazon pay subscription confirmed: topic=%s message_id=%s host=%s",
        notification.topic_arn,
        notification.message_id,
        host,
    )
    return _answer(200)
