"""Amazon Pay's Instant Payment Notifications: verify the SNS message, then reconcile what it names.

Section 10 of docs/amazon-pay-api.md: an IPN is only a hint. Once its signature checks out, it is
routed by object type (`storefront.notifications`): the saved wallet or the charges it names are
read from Amazon and settled through the same path a buyer's refresh takes; the message's
content decides nothing. A verified SubscriptionConfirmation is confirmed by a GET on its
SubscribeURL. Amazon posts here without our cookie, so the CSRF check exempts exactly this
endpoint; the SNS signature takes its place.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from amazonpay.errors import NotificationError
from amazonpay.notifications import Notification, confirm_subscription, parse_notification
from storefront.views.wallet import wallet_services
from storefront.web import shop

bp = Blueprint("notifications", __name__)

logger = logging.getLogger(__name__)

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
    try:
        report = wallet_services().router.route(message)
    except SQLAlchemyError as exc:
        # The message was genuine; the periodic `flask reconcile` settles these claims later.
        logger.warning("amazon pay notification not reconciled: %s", type(exc).__name__)
    else:
        if report.returns.results:
            # The line the return's reconciliation has always logged, unchanged.
            logger.info("amazon pay notification %s", report.returns.summary())
        if report.charges.results or report.wallet_refreshed or report.handled_by:
            logger.info("amazon pay notification routed: %s", report.summary())
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
