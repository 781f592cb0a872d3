"""The PromQL idioms of the dashboards and rules, each written once.

Every function returns PromQL text. Composite expressions are laid out on
several lines (the rule files and Grafana's editor show them as they are):
an operand that spans lines gets lines of its own, indented.
"""

from __future__ import annotations

from collections.abc import Sequence

from mixin.config import PERIOD_START, MixinConfig, RateWindow


def indent(text: str, by: str = "  ") -> str:
    """*text* with every non-empty line indented *by*."""
    return "\n".join(by + line if line else line for line in text.splitlines())


def enclose(prefix: str, expr: str, *, block: bool | None = None) -> str:
    """``prefix (expr)``, or ``(expr)`` without a prefix: on one line, or with *expr* on
    indented lines of its own when it spans lines (or when *block* asks for it, for a
    long line)."""
    if block is None:
        block = "\n" in expr
    opening = f"{prefix} (" if prefix else "("
    return f"{opening}\n{indent(expr)}\n)" if block else f"{opening}{expr})"


def label_list(labels: Sequence[str]) -> str:
    """``job, account``: labels as a grouping clause lists them, each once, in order."""
    return ", ".join(dict.fromkeys(labels))


def selector(metric: str, matchers: Sequence[str] = ()) -> str:
    """``metric{m1, m2}``, or the bare name without matchers."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def aggregate_without(operator: str, labels: Sequence[str], expr: str, *,
                      block: bool | None = None) -> str:
    """``operator without (labels) (expr)``: keeps every other label (rules use it, so
    that ``job`` and any external label survive)."""
    return enclose(f"{operator} without ({label_list(labels)})", expr, block=block)


def aggregate_by(operator: str, labels: Sequence[str], expr: str, *,
                 block: bool | None = None) -> str:
    """``operator by (labels) (expr)``."""
    return enclose(f"{operator} by ({label_list(labels)})", expr, block=block)


def dedup(cfg: MixinConfig, expr: str, *, also: Sequence[str] = (),
          block: bool | None = None) -> str:
    """*expr* counted once across replicas: ``max without (instance, pod) (expr)``.

    Replicas of one exporter serve the same figures, told apart only by the
    labels Prometheus adds per target; summing or rating them as they are counts
    every figure once per replica. ``max``: a replica that has just restarted
    and has not refreshed yet serves nothing, and the freshest is the closest to
    the truth. *also* drops more labels at the same time.
    """
    return aggregate_without("max", (*cfg.replica_labels, *also), expr, block=block)


def per_hour(expr: str) -> str:
    """A per-second rate as a per-hour one. An expression over several lines is
    parenthesised: it may end with ``or``/``-``, which bind looser than ``*``."""
    return f"(\n{indent(expr)}\n) * 3600" if "\n" in expr else f"{expr} * 3600"


def period_change(cfg: MixinConfig, counter: str, window: RateWindow,
                  matchers: Sequence[str] = (), *, only: Sequence[str] = (),
                  increase: bool = False, start: str = PERIOD_START,
                  ids: str | None = None) -> str:
    """What business *counter* says was spent over *window*, per series, per second
    (with *increase*, in all): the same figure on Prometheus 2 and 3.

    A period counter is the sum since its period began. Within one period, what
    was spent over the window is its value now less its value a window ago:
    exact, with no extrapolation, and the same whether range selectors include
    the sample at the window's start (Prometheus 2) or not (3). A downward
    revision by upstream (a refund) lowers that net figure, never below 0;
    rate() would read it as a counter reset and count the whole period-to-date
    value as new spend.

    A new period started in the window (the period start moved; it has no id
    label, hence ``ignoring``): what the new period spent (its value now), plus
    what the old one spent within the window, its highest value there (its last:
    a period counter only grows) less its value a window ago.

    Where neither applies, the growth since the series' lowest value in the
    window: a series younger than the window (a new id, a new Prometheus, a
    replica back from a restart, whose samples went stale), or a new period that
    has already spent more than the old one's last value (the highest value may
    be the new period's). It may be less than was spent, never a spike.

    *only* adds matchers to the counter's selector alone (``verdict="fail"``):
    the period start has no such label.

    The same holds for any period figure that only grows within its period: a
    consumption gauge of the team endpoints, whose period is the billing period
    (*start* = its start gauge; *ids* = the labels that tell its series apart,
    which the period start lacks; by default, a business counter's).
    """
    series = selector(counter, (*matchers, *only))
    start = selector(start, matchers)
    ids = ids if ids is not None else cfg.id_label(counter)
    ago = f"{series} offset {window.range}"
    highest = f"max_over_time({series}[{window.range}])"
    same_period = (f"clamp_min({series} - {ago}, 0)\n"
                   f"unless ignoring ({ids})\n"
                   f"({start} != {start} offset {window.range})")
    new_period = f"{series} + {highest} - {ago}\nand\n{highest} > {series}"
    growth = f"{series} - min_over_time({series}[{window.range}])"
    spent = f"{same_period}\nor\n{new_period}\nor\n{growth}"
    return spent if increase else f"{enclose('', spent)} / {window.seconds}"


def day_last(series: str, *, days_ahead: int = 1) -> str:
    """The last value of *series* in the day that starts at the evaluation time (with
    *days_ahead* 2, the day after): ``last_over_time(series[1d] offset -1d)``.

    Evaluated at 00:00 UTC, the steps of a 1d range query, it is the day's last
    value: a live day's last scrape, a backfilled day's sample of 00:00 the next
    day, or the period's last sample (1 ms before the next period starts). A
    range query's last step, today's 00:00, sees everything up to now. The
    window looks forward (a negative offset: Prometheus 2.33 and later,
    VictoriaMetrics); one that looked back from the step would show a day only
    once it is over, and Grafana aligns a range query's end down to its step.
    """
    return f"last_over_time({series}[1d] offset -{days_ahead}d)"


def period_totals(spent: str, start: str, keys: Sequence[str]) -> str:
    """*spent* (per *keys*, each day's last value: see day_last) on the days whose next
    day belongs to another period, or has no data: each period's total on its last day,
    and, on the last day with data, the current period so far. *start* is the selector
    of the period start, which moves only when a period starts."""
    def period(days_ahead: int) -> str:
        return aggregate_by("max", keys, day_last(start, days_ahead=days_ahead), block=True)

    same_next_day = enclose("", f"{period(2)}\n==\n{period(1)}")
    last_day = f"{period(1)}\nunless\n{same_next_day}"
    return f"{enclose('', spent)}\nand\n{enclose('', last_day)}"


def percent_of(part: str, whole: str, keys: Sequence[str]) -> str:
    """*part* as a percentage of *whole*, matched on *keys*. Where *whole* is 0 there
    is no data, rather than the Inf or NaN of a division by 0."""
    return (f"100 * {enclose('', part)}\n/ on ({label_list(keys)})\n"
            f"{enclose('', f'{whole} > 0')}")


def ranking(k: int, counter: str, keys: Sequence[str], over: str) -> str:
    """The *k* series of *counter* (a selector; by *keys*) that grew most over range
    *over*, ranked once at its end (``@ end()``), so that the same ones are drawn from
    one end of a graph to the other instead of changing at every step."""
    increase = f"increase({counter}[{over}] @ end())"
    return f"topk({k}, {aggregate_by('max', keys, increase)})"


def among(expr: str, keys: Sequence[str], ranked: str) -> str:
    """*expr* for the series that *ranked* keeps, matched on *keys*."""
    return f"{expr}\nand on ({label_list(keys)})\n  {ranked}"


def with_names(expr: str, keys: Sequence[str], info: str, names: Sequence[str],
               unnamed: str) -> str:
    """*expr* with the *names* labels of the _info series *info*, joined on *keys*
    (``group_left``, as the metric contract says); the series of *expr* that no info
    series names are those of *unnamed* instead, which a plain join would drop."""
    joined = label_list(names)
    return (f"(\n{indent(expr)}\n)\n* on ({label_list(keys)}) group_left ({joined})\n"
            f"  {aggregate_by('group', (*keys, *names), info)}\nor on ({label_list(keys)})\n"
            f"{unnamed}")


def named_or_id(expr: str, keys: Sequence[str], info: str, name: str, id_label: str,
                folded: str) -> str:
    """*expr* with label *name* from *info*; a series without an info series (no name
    upstream, or ``__other__``, where the cardinality cap folds the smallest) keeps its
    id as name, called *folded* for ``__other__``, instead of disappearing, as a plain
    ``group_left`` join would make it."""
    fallback = (f'label_replace(\n  label_replace(\n{indent(expr, "    ")},\n'
                f'    "{name}", "$1", "{id_label}", "(.*)"\n  ),\n'
                f'  "{name}", "{folded}", "{id_label}", "__other__"\n)')
    return with_names(expr, keys, info, (name,), fallback)
