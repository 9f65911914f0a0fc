"""Which plan a person is on: override, then the best of their roles, then the server default.

Plans are the API's own (free, starter, pro, enterprise) so a person's quota reads like the
account's. In a DM there is no server: the bot-wide default applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared import contract

RANK = {name: i for i, name in enumerate(contract.PLAN_NAMES)}  # free < starter < pro < enterprise


@dataclass(frozen=True, slots=True)
class PlanChoice:
    plan: contract.Plan
    why: str  # "override", "role <id>", "server default", "bot default"


def best(names: Iterable[str]) -> str | None:
    ranked = sorted((n for n in names if n in RANK), key=RANK.__getitem__)
    return ranked[-1] if ranked else None


def resolve(
    *,
    bot_default: str,
    server_default: str | None = None,
    role_plans: Mapping[int, str] | None = None,
    member_roles: Iterable[int] = (),
    override: str | None = None,
    plans: Mapping[str, contract.Plan] = contract.PLANS,
) -> PlanChoice:
    """The plan that applies; an override beats roles, roles beat the server's default."""
    if override is not None:
        return PlanChoice(plans[override], "override")
    held = {role: plan for role, plan in (role_plans or {}).items() if role in set(member_roles)}
    top = best(held.values())
    if top is not None:
        role = next(r for r, p in held.items() if p == top)
        return PlanChoice(plans[top], f"role {role}")
    if server_default is not None:
        return PlanChoice(plans[server_default], "server default")
    return PlanChoice(plans[bot_default], "bot default")
