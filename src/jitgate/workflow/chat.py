"""Approvals from Slack: a signed click on Approve or Deny becomes the review the API would make.

One click, in order:

1. the request must be signed by Slack, recently (``auth/slack.py``), else ``Unauthenticated``;
2. its body must be a ``block_actions`` payload of one of the broker's buttons, else ``InvalidInput``;
3. its signature must not have been acted on before (``store/chat.py``), else ``Unauthenticated``
   and an ``access.refused`` record: a replay is signed, so it came through Slack once;
4. the Slack user must be in the user map and be a local user who exists and is enabled, read
   from the users table at the time of the click (so a regrouped or disabled user counts as they
   are now); else refused, recorded, and told so;
5. a role that demands a fresh or strong sign-in (``requires``) is not reviewed from chat, which
   proves no sign-in at all: the approver is sent to the request's page in the console;
6. then ``requests.review``, the same service as the API's, so policy decides (no approving one's
   own request, only the role's approvers, the number of approvals), with the review's record
   saying it came from Slack and which Slack user clicked.

The answer is a Slack message (``slack_messages.reply``): the request's outcome in place of the
message with the buttons, or a line shown to the clicker alone when nothing was decided (refused,
or more approvals needed). Slack shows anything but 200 as a failure, so refusals after step 3 are
answered 200 with that line; only a request Slack did not sign is refused with 401.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from jitgate.auth import slack
from jitgate.auth.slack import SlackUsers
from jitgate.domain.identity import Identity, IdentityKind, namespaced_name
from jitgate.domain.model import RequestState, Verdict
from jitgate.errors import (
    InvalidInput,
    JitgateError,
    PolicyDenied,
    StepUpRequired,
    StorageUnavailable,
    Unauthenticated,
)
from jitgate.policy.decision import may_see
from jitgate.policy.model import Role
from jitgate.store import accounts
from jitgate.store import chat as chat_store
from jitgate.store import queries as q
from jitgate.workflow import requests
from jitgate.workflow.chat_replies import ResponseSender
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.slack_messages import APPROVE, DENY, OPEN, console_url, escaped, is_request_id, reply

CHANNEL = "slack"
COMMENT = "via Slack"
_VERDICTS = {APPROVE: Verdict.APPROVE, DENY: Verdict.DENY}
Answer = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Click:
    """A click on one of the broker's buttons, as the signed payload says."""

    team: str
    user: str
    action: str
    request_id: str
    response_url: str | None

    @property
    def verdict(self) -> Verdict | None:
        return _VERDICTS.get(self.action)

    @property
    def attempted(self) -> str:
        verdict = self.verdict
        return f"review.{verdict.value}" if verdict is not None else "chat.interaction"

    def via(self) -> dict[str, str]:
        return {"channel": CHANNEL, "slack_team": self.team, "slack_user": self.user}


def parse_click(body: bytes) -> Click:
    """The click in a Slack interaction body (form-encoded, its ``payload`` field JSON)."""
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=True)
        raw = form["payload"]
    except (UnicodeDecodeError, ValueError, KeyError):
        raise InvalidInput("the body must be a form with one payload field") from None
    if len(raw) != 1:
        raise InvalidInput("the body must be a form with one payload field")
    try:
        payload = json.loads(raw[0])
    except ValueError:
        raise InvalidInput("payload is not JSON") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise InvalidInput("only block_actions interactions are handled")
    user = _field(payload, "user")
    team = _field(payload, "team") or {"id": user.get("team_id")}
    user_id, team_id = user.get("id"), team.get("id")
    if not isinstance(user_id, str) or not slack.USER_ID.match(user_id):
        raise InvalidInput("payload.user.id is not a Slack user id")
    if not isinstance(team_id, str) or not slack.TEAM_ID.match(team_id):
        raise InvalidInput("payload.team.id is not a Slack workspace id")
    actions = payload.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise InvalidInput("payload.actions must hold one action")
    action, value = actions[0].get("action_id"), actions[0].get("value", "")
    if action not in {APPROVE, DENY, OPEN}:
        raise InvalidInput("the action is not one of jitgate's buttons")
    if action != OPEN and (not isinstance(value, str) or not is_request_id(value)):
        raise InvalidInput("the button's value is not a request id")
    response_url = payload.get("response_url")
    return Click(
        team=team_id,
        user=user_id,
        action=action,
        request_id=value if isinstance(value, str) else "",
        response_url=response_url if isinstance(response_url, str) else None,
    )


def _field(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def demands_step_up(role: Role) -> bool:
    """Whether the role asks for a fresh or strong sign-in, which a click in chat never is."""
    return bool(getattr(role, "requires", None))


class SlackApprovals:
    """The interaction endpoint's service: verify, de-duplicate, map the user, review, answer."""

    def __init__(
        self,
        ctx: WorkflowContext,
        *,
        signing_secret: str,
        users: SlackUsers,
        public_url: str | None,
        replies: ResponseSender,
    ) -> None:
        self.ctx = ctx
        self._secret = signing_secret.encode()
        self.users = users
        self.public_url = public_url
        self.replies = replies

    def interact(self, body: bytes, *, timestamp: str | None, signature: str | None) -> Answer | None:
        """Act on one interaction; the message to answer with, or None where there is nothing to say."""
        now = self.ctx.clock.now()
        slack.verify_request(self._secret, timestamp=timestamp, signature=signature, body=body, now=now)
        click = parse_click(body)
        self._first_time(click, signature or "", now)
        if click.verdict is None:
            return None  # the console link: Slack opens it, the broker has nothing to do
        answer = self._decide(click)
        self.replies.send(click.response_url, answer)
        return answer

    def _first_time(self, click: Click, signature: str, now: datetime) -> None:
        with self.ctx.db.write() as conn:
            first = chat_store.first_sighting(
                conn, slack.signature_digest(signature), now=now, forget_before=now - 2 * slack.WINDOW
            )
        if not first:
            refused = Unauthenticated("this Slack interaction was already acted on (replayed)")
            self._record(self._actor(click), click, refused)
            raise refused

    def _actor(self, click: Click) -> Identity:
        """Who to record a refusal under: the mapped user, else the Slack account itself."""
        name = self.users.local_name(click.team, click.user)
        return Identity(name or namespaced_name(CHANNEL, click.user), source=CHANNEL)

    def _record(self, actor: Identity, click: Click, exc: JitgateError) -> None:
        self.ctx.record_refusal(
            actor, click.attempted, exc, {"request_id": click.request_id, "details": {"via": click.via()}}
        )

    def _refuse(self, actor: Identity, click: Click, exc: JitgateError) -> Answer:
        self._record(actor, click, exc)
        return reply(f"Refused: {escaped(exc.message, 500)}", replace=False)

    def _decide(self, click: Click) -> Answer:
        verdict = click.verdict
        if verdict is None:
            raise InvalidInput("not a review")
        identity = self._identity(click)
        if not isinstance(identity, Identity):
            return identity
        if self._role_demands_step_up(identity, click.request_id):
            exc = StepUpRequired(
                f"request {click.request_id} needs a fresh sign-in to review", max_age=None, acr_values=()
            )
            self._record(identity, click, exc)
            return self._step_up_answer(click)
        try:
            view = requests.review(
                self.ctx, identity, click.request_id, verdict=verdict, comment=COMMENT, via=click.via()
            )
        except StepUpRequired:
            return self._step_up_answer(click)  # review recorded the refusal
        except StorageUnavailable:
            return reply("The broker cannot record decisions right now; try again shortly.", replace=False)
        except JitgateError as exc:
            return reply(f"Refused: {escaped(exc.message, 500)}", replace=False)
        return self._outcome(identity, verdict, view)

    def _identity(self, click: Click) -> Identity | Answer:
        """The jitgate user the click is from, as they are now; or the answer refusing it."""
        name = self.users.local_name(click.team, click.user)
        if name is None:
            return self._refuse(
                self._actor(click),
                click,
                PolicyDenied(
                    f"Slack user {click.user} is not linked to a jitgate user; ask an administrator"
                ),
            )
        with self.ctx.db.read() as conn:
            row = accounts.get_user(conn, name)
        actor = Identity(name, source=CHANNEL)
        if row is None:
            return self._refuse(
                actor, click, PolicyDenied(f"the jitgate user {name} linked to you does not exist")
            )
        if row.disabled:
            return self._refuse(actor, click, PolicyDenied(f"the jitgate user {name} is disabled"))
        if row.kind is not IdentityKind.USER:
            return self._refuse(actor, click, PolicyDenied(f"{name} is a service account, not a person"))
        return row.identity(source=CHANNEL)

    def _role_demands_step_up(self, identity: Identity, request_id: str) -> bool:
        with self.ctx.db.read() as conn:
            req = q.get_request(conn, request_id)
        if req is None:
            return False  # review says it does not exist, and records that
        role = self.ctx.policy.role(req.role)
        return role is not None and may_see(identity, req.requester, role) and demands_step_up(role)

    def _step_up_answer(self, click: Click) -> Answer:
        if self.public_url:
            link = f"<{console_url(self.public_url, click.request_id)}|open it in the console>"
        else:
            link = "open it in the console"
        return reply(
            f"Request {escaped(click.request_id)} needs a fresh sign-in to review: {link} and decide there.",
            replace=False,
        )

    def _outcome(self, identity: Identity, verdict: Verdict, view: dict[str, Any]) -> Answer:
        who = escaped(identity.name, 200)
        requester, role_name = escaped(view["requester"], 200), escaped(view["role"], 200)
        whose = f"{requester}'s request {escaped(view['id'])} for *{role_name}*"
        state = view["state"]
        if verdict is Verdict.DENY:
            return reply(f"*Denied* by {who} via Slack: {whose}.", replace=True)
        if state == RequestState.PENDING.value:
            role = self.ctx.policy.role(view["role"])
            given = sum(1 for r in view.get("reviews", []) if r["verdict"] == Verdict.APPROVE.value)
            left = max(1, (role.approvals_required if role is not None else 1) - given)
            return reply(f"Your approval of {whose} is recorded; it needs {left} more.", replace=False)
        return reply(f"*Approved* by {who} via Slack: {whose} is {state.lower()}.", replace=True)
