"""Redaction measured on public data stalwart did not write: recall per entity type, false
positives, and time per 4 KB for each tier.

Writes the ``"redaction"`` key of ``bench/results/guard.json`` (read, that key replaced,
written back: the other keys are ``bench/guard.py``'s).

Data (all offline, from packages installed by their registry's client):

- **PII**: sentences from Microsoft's presidio-evaluator (MIT, PyPI ``presidio-evaluator``)
  ``PresidioSentenceFaker``: its 209 public templates filled by its own providers and its
  bundled FakeNameGenerator records, each entity labelled by the generator (PERSON,
  STREET_ADDRESS, GPE, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, ...). No labelled PII
  corpus could be installed offline, so this generator, with its own labels, is the
  public alternative. **The split is by template**: the templates are shuffled with
  ``SPLIT_SEED`` and cut into a tuning part (``TUNE_SHARE``) and an evaluation part before
  any tuning; ``--tune`` prints misses on the tuning part only, and every figure written
  comes from sentences of the evaluation templates. The providers (address and phone
  formats, name lists) are shared by both parts: see docs/redaction.md.
- **PII negatives**: the paragraphs of the Python language reference that ship with
  CPython (``pydoc_data.topics``, PSF licence): technical prose with numbers, versions,
  code and capitalised words, and no personal data; a paragraph with any finding is a
  false positive.
- **Secrets**: positives are strings drawn from the value patterns of Samsung CredSweeper's
  public rule file (MIT, PyPI ``credsweeper``, ``credsweeper/rules/config.yaml``) for the
  vendor token rules in ``VENDOR_RULES``, by a seeded sampler of the regex's own syntax;
  negatives are Faker's (MIT) non-secret identifiers (UUIDs, hashes, paths, URLs,
  versions...). Both sit in neutral log lines (no "key" or "token" word). Split per rule
  the same way: tuning and evaluation samples.

``--same-findings REV`` compares the fast tier's findings of git revision ``REV`` and of this
tree, span for span, on the tuning data and the log lines (for a change meant to keep them),
and on the evaluation part, where it says only how many texts differ, never what.

``--compare REV`` also times the fast tier of ``REV`` against this tree in the same run:
per 4 KB chunk (``fast_tier_before_after``), per pass (``fast_tier_breakdown``) and chunk by
chunk, paired (``fast_tier_paired``: the figure least moved by the machine's load).

``--native-bound`` measures only what a native pre-filter of the gazetteer could save at best
and what an Aho-Corasick automaton of its words costs (``redaction.native_prefilter``).

``--list-split`` measures only recall on person names and places split by whether the
shipped gazetteer lists know them (``redaction.list_split``; docs/redaction.md).

Usage: ``python bench/redaction.py [--quick] [--tune] [--list-split]``; needs ``pip install
presidio-evaluator credsweeper`` (``--no-deps`` is enough for credsweeper: only its rule
file is read) and ``stalwart[ner]`` for the accurate tier.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib.util
import json
import os
import pathlib
import platform
import random
import re
import statistics
import sys
import time
import warnings
from importlib import metadata
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench._meta import commit
from bench._redaction_compare import breakdown, compare_fast, paired, same_findings
from bench._redaction_native import automaton_cost, prefilter_bound

from stalwart.guard import Redactor
from stalwart.guard._gazetteer import _STRIP, Gazetteer, _key, gazetteer
from stalwart.guard._ner import ner_model

warnings.filterwarnings("ignore", category=DeprecationWarning)
import sre_constants  # noqa: E402  (deprecated names, still the regex parser's own)
import sre_parse  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "guard.json"
OTHER_SCRIPTS_KEYS = ("accurate_skip", "native_prefilter")  # written apart, kept by a full run
SPLIT_SEED = 20261205
TUNE_SHARE = 0.35
GENERATOR_SEED = 42
STRUCTURED = ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "US_SSN")
NAMED = ("PERSON", "STREET_ADDRESS", "GPE")
COVERED = 0.8  # a span is caught when this share of its letters and digits is redacted
VENDOR_RULES = (
    "Discord Bot Token", "Discord Webhook", "Slack Token", "Slack Webhook", "Stripe Credentials",
    "Twilio Credentials", "SendGrid API Key", "NPM Token", "PyPi API Token", "Jfrog Token",
    "Gitlab Prefix Token", "Github Classic Token", "Github Fine-granted Token",
    "AWS Client ID", "Google API Key", "Google OAuth Secret", "Google OAuth Access Token",
    "OpenAI Token", "Anthropic API Key", "JSON Web Token", "MailChimp API Key",
    "Shopify Token", "Square Access Token", "Telegram Bot API Token", "Digital Ocean Token",
    "Databricks Access Token", "Hugging Face User Access Token", "Linear API Key",
    "NewRelic Credentials", "Postman Credentials", "Age Secret Key", "Doppler API Key",
    "Grafana Service Account Token", "Hashicorp Vault Token", "Supabase Credentials",
    "Pulumi Personal Access Token", "Docker Access Token", "Sentry User Auth Token",
    "CloudFlare API Token", "Tailscale Credentials", "RubyGems API Key", "Figma Personal "
    "Access Token", "Perplexity API Key", "OpenRouter API Key", "Dynatrace API Token",
    "Atlassian PAT token", "Bitbucket App Password", "CircleCI Personal API Token",
    "PlanetScale Credentials", "Contentful Credentials", "SonarQube Credentials",
)  # fmt: skip
LINES = (
    "deploy finished, using {} for the upload",
    "{}",
    "retrying request with {} after 2 failures",
    "config loaded: {} (from env)",
    'payload {{"value": "{}", "ok": true}}',
)


# -- the PII corpus ------------------------------------------------------------------------
def _template_split() -> tuple[list[str], list[str]]:
    from presidio_evaluator.data_generator import presidio_templates_file_path

    lines = pathlib.Path(presidio_templates_file_path).read_text(encoding="utf-8").splitlines()
    templates = sorted({t.strip() for t in lines if t.strip()})
    random.Random(SPLIT_SEED).shuffle(templates)
    cut = round(len(templates) * TUNE_SHARE)
    return templates[:cut], templates[cut:]


def pii_samples(templates: list[str], count: int) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(text, [(start, end, entity type)]) from the generator over ``templates``."""
    import logging

    from presidio_evaluator.data_generator import PresidioSentenceFaker

    logging.disable(logging.WARNING)
    faker = PresidioSentenceFaker(
        "en_US", lower_case_ratio=0.05, sentence_templates=templates, random_seed=GENERATOR_SEED
    )
    out = []
    for sample in faker.generate_new_fake_sentences(count):
        spans = [(s.start_position, s.end_position, s.entity_type) for s in sample.spans]
        out.append((sample.full_text, spans))
    return out


def _alnum_positions(text: str, start: int, end: int) -> list[int]:
    return [i for i in range(start, end) if text[i].isalnum()]


def pii_quality(redactor: Redactor, samples: list[Any], show: bool = False) -> dict[str, Any]:
    caught: collections.Counter[str] = collections.Counter()
    touched: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    findings = stray = 0
    for text, spans in samples:
        found = [(f.start, f.end) for f in redactor.findings(text)]
        covered = set()
        for a, b in found:
            covered.update(range(a, b))
        for a, b, kind in spans:
            total[kind] += 1
            chars = _alnum_positions(text, a, b)
            share = sum(i in covered for i in chars) / max(1, len(chars))
            caught[kind] += share >= COVERED
            touched[kind] += share > 0
            if show and share < COVERED and kind in STRUCTURED + NAMED:
                print(f"MISS {kind}: {text[a:b]!r} in {text!r}")
        for a, b in found:
            findings += 1
            if not any(a < e and s < b for s, e, _ in spans):
                stray += 1
                if show:
                    print(f"STRAY {text[a:b]!r} in {text!r}")
    return {
        "spans": dict(sorted(total.items())),
        "recall": {k: round(caught[k] / total[k], 4) for k in sorted(total)},
        "recall_any_overlap": {k: round(touched[k] / total[k], 4) for k in sorted(total)},
        "findings": findings,
        "findings_outside_labels": round(stray / max(1, findings), 4),
    }


# -- names in and out of the gazetteer's lists ----------------------------------------------
@functools.cache
def _lower_lists(g: Gazetteer) -> tuple[frozenset[str], frozenset[str]]:
    """(given names and surnames, places) of ``g`` in lower case."""
    return (
        frozenset(n.lower() for n in g.first | g.last),
        frozenset(p.lower() for p in g.places),
    )


GROUPS = ("listed", "partly_listed", "unlisted")


def listing(g: Gazetteer, name: str, kind: str) -> str:
    """How far the shipped lists know ``name`` (compared in lower case, without accents
    or a possessive): a PERSON is ``listed`` when each of its words (initials aside) is a
    listed given name or surname, ``unlisted`` when none is; a GPE is ``listed`` when the
    whole name is a listed place, ``unlisted`` when no run of its words is; else
    ``partly_listed``."""
    words = [_key(w.strip(_STRIP + ".")).lower() for w in name.split()]
    words = [w for w in words if w]
    names, places = _lower_lists(g)
    if kind == "PERSON":
        known = [w in names for w in words if len(w) > 1]
        return "listed" if known and all(known) else "partly_listed" if any(known) else "unlisted"
    if " ".join(words) in places:
        return "listed"
    runs = (" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1))
    return "partly_listed" if any(r in places for r in runs) else "unlisted"


def list_split(redactor: Redactor, samples: list[Any], g: Gazetteer) -> dict[str, Any]:
    """Recall on PERSON and GPE spans, split by whether the lists know the name."""
    caught: collections.Counter[tuple[str, str]] = collections.Counter()
    total: collections.Counter[tuple[str, str]] = collections.Counter()
    for text, spans in samples:
        covered: set[int] = set()
        for f in redactor.findings(text):
            covered.update(range(f.start, f.end))
        for a, b, kind in spans:
            if kind not in ("PERSON", "GPE"):
                continue
            group = listing(g, text[a:b], kind)
            chars = _alnum_positions(text, a, b)
            total[kind, group] += 1
            caught[kind, group] += sum(i in covered for i in chars) / max(1, len(chars)) >= COVERED
    return {
        kind: {
            group: {
                "spans": total[kind, group],
                "recall": round(caught[kind, group] / max(1, total[kind, group]), 4),
            }
            for group in GROUPS
        }
        for kind in ("PERSON", "GPE")
    }


def list_split_run(tiers: dict[str, Redactor], samples: list[Any]) -> dict[str, Any]:
    """``redaction.list_split`` of guard.json: each tier's recall on names the lists know
    and on names they do not (the evaluation templates' sentences)."""
    g = gazetteer()
    unlisted = {
        kind: sorted({t[a:b] for t, spans in samples for a, b, k in spans
                      if k == kind and listing(g, t[a:b], kind) == "unlisted"})
        for kind in ("PERSON", "GPE")
    }  # fmt: skip
    return {
        "statistic": (
            f"recall: a labelled span is caught when >= {COVERED:.0%} of its letters and "
            "digits are redacted"
        ),
        "split": (
            "by the shipped lists (stalwart/guard/data/gazetteer.json.gz), compared in lower "
            "case without accents or a possessive: PERSON listed = every word (initials "
            "aside) a listed given name or surname, unlisted = none; GPE listed = the whole "
            "name a listed place, unlisted = no run of its words one; partly_listed between"
        ),
        "data": (
            f"presidio-evaluator {metadata.version('presidio-evaluator')} "
            f"PresidioSentenceFaker (en_US, lower_case_ratio 0.05, seed {GENERATOR_SEED}), "
            f"{len(samples)} sentences of the evaluation templates only (split seed "
            f"{SPLIT_SEED})"
        ),
        "lists": {"first": len(g.first), "last": len(g.last), "places": len(g.places)},
        "unlisted_examples": {k: v[:12] for k, v in unlisted.items()},
        "tiers": {name: list_split(r, samples, g) for name, r in tiers.items()},
    }


def negative_paragraphs() -> tuple[list[str], list[str]]:
    """(tuning third, evaluation two thirds) of the reference's paragraphs, split by seed."""
    import pydoc_data.topics as topics

    paragraphs = [
        p.strip()
        for text in topics.topics.values()
        for p in re.split(r"\n\s*\n", text)
        if len(p.strip()) >= 200
    ]
    random.Random(SPLIT_SEED).shuffle(paragraphs)
    cut = len(paragraphs) // 3
    return paragraphs[:cut], paragraphs[cut:]


def negative_fp(redactor: Redactor, paragraphs: list[str], show: bool = False) -> dict[str, Any]:
    flagged = 0
    kinds: collections.Counter[str] = collections.Counter()
    for p in paragraphs:
        found = redactor.findings(p)
        flagged += bool(found)
        for f in found:
            kinds[f.kind] += 1
            if show:
                print(f"FP {f.kind}: {p[f.start : f.end]!r}")
    return {
        "paragraphs": len(paragraphs),
        "false_positive_rate": round(flagged / len(paragraphs), 4),
        "findings_by_kind": dict(kinds),
    }


# -- the secrets set -------------------------------------------------------------------------
def _sample(parsed: Any, rng: random.Random, groups: dict[int, str]) -> str:
    out = []
    for op, av in parsed:
        if op is sre_constants.LITERAL:
            out.append(chr(av))
        elif op is sre_constants.NOT_LITERAL:
            out.append(rng.choice([c for c in "abcdefXYZ0123456789" if ord(c) != av]))
        elif op is sre_constants.ANY:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789"))
        elif op is sre_constants.IN:
            out.append(_sample_class(av, rng))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = av
            high = min(high, low + 40)
            for _ in range(rng.randint(low, max(low, high))):
                out.append(_sample(sub, rng, groups))
        elif op is sre_constants.SUBPATTERN:
            group, _, _, sub = av
            text = _sample(sub, rng, groups)
            if group:
                groups[group] = text
            out.append(text)
        elif op is sre_constants.BRANCH:
            out.append(_sample(rng.choice(av[1]), rng, groups))
        elif op is sre_constants.GROUPREF:
            out.append(groups.get(av, ""))
        elif op is sre_constants.GROUPREF_EXISTS:
            _, yes, no = av
            out.append(_sample(no if no is not None else yes, rng, groups))
        # AT, ASSERT, ASSERT_NOT: zero-width, nothing to emit
    return "".join(out)


def _sample_class(items: Any, rng: random.Random) -> str:
    choices: list[str] = []
    negate = False
    for op, av in items:
        if op is sre_constants.NEGATE:
            negate = True
        elif op is sre_constants.LITERAL:
            choices.append(chr(av))
        elif op is sre_constants.RANGE:
            choices += [chr(c) for c in range(av[0], av[1] + 1)]
        elif op is sre_constants.CATEGORY:
            choices += list("0123456789" if "DIGIT" in str(av) else "abcXYZ019_")
    if negate:
        return rng.choice([c for c in "abcdefghijkXYZ0123456789" if c not in choices])
    return rng.choice(choices)


def secret_samples(per_rule: int) -> tuple[list[Any], list[Any], list[str]]:
    """(tuning positives, evaluation positives, negatives): positives are (rule, line)."""
    import yaml

    spec = importlib.util.find_spec("credsweeper")  # located, not imported (its rule file only)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps credsweeper: its rule file is the secrets source")
    rules_file = pathlib.Path(spec.submodule_search_locations[0]) / "rules/config.yaml"
    rules = {r["name"]: r for r in yaml.safe_load(rules_file.read_text())}
    rng = random.Random(SPLIT_SEED)
    tune: list[Any] = []
    evaluate: list[Any] = []
    for name in VENDOR_RULES:
        pattern = rules[name]["values"][0]
        value_re = re.compile(pattern)
        inner = _value_group(pattern)
        drawn = []
        for _ in range(per_rule * 4):
            value = _sample(sre_parse.parse(inner), rng, {})
            if value_re.search(f" {value} ") and len(drawn) < per_rule:
                drawn.append((name, rng.choice(LINES).format(value)))
        cut = round(len(drawn) * TUNE_SHARE)
        tune += drawn[:cut]
        evaluate += drawn[cut:]
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(SPLIT_SEED)
    makers = (
        fake.uuid4, fake.sha1, fake.sha256, fake.md5, fake.file_path, fake.uri,
        fake.user_name, fake.isbn13, fake.ean13, fake.hex_color, fake.mime_type,
        fake.iso8601, fake.slug, fake.domain_name, fake.user_agent,
        lambda: f"v{fake.random_int(0, 9)}.{fake.random_int(0, 40)}.{fake.random_int(0, 99)}",
    )  # fmt: skip
    negatives = [rng.choice(LINES).format(str(rng.choice(makers)())) for _ in range(per_rule * 20)]
    return tune, evaluate, negatives


def _value_group(pattern: str) -> str:
    """The ``(?P<value>...)`` part of a CredSweeper pattern (balanced parentheses)."""
    start = pattern.index("(?P<value>") + len("(?P<value>")
    depth, i = 1, start
    while depth:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        i += 1
    return pattern[start : i - 1]


def secrets_quality(
    redactor: Redactor, positives: list[Any], negatives: list[str], show: bool = False
) -> dict[str, Any]:
    missed: collections.Counter[str] = collections.Counter()
    per_rule: collections.Counter[str] = collections.Counter()
    for rule, line in positives:
        per_rule[rule] += 1
        if not redactor.findings(line):
            missed[rule] += 1
            if show:
                print(f"MISS {rule}: {line!r}")
    false = 0
    for line in negatives:
        found = redactor.findings(line)
        false += bool(found)
        if show and found:
            print(f"FP {[(f.kind, line[f.start : f.end]) for f in found]} in {line!r}")
    return {
        "positives": len(positives),
        "recall": round(1 - sum(missed.values()) / max(1, len(positives)), 4),
        "missed_by_rule": dict(missed),
        "negatives": len(negatives),
        "false_positive_rate": round(false / max(1, len(negatives)), 4),
    }


# -- time ------------------------------------------------------------------------------------
def chunks_4kb(texts: list[str], count: int) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    size = 0
    for text in texts * 20:
        buf.append(text)
        size += len(text) + 1
        if size >= 4096:
            out.append("\n".join(buf)[:4096])
            buf, size = [], 0
            if len(out) == count:
                break
    return out


def log_lines() -> list[str]:
    """JSON log lines like the runtime's own, about one in six with a value to redact (Faker
    fills the values): realistic log text for the timing."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(SPLIT_SEED)
    rng = random.Random(SPLIT_SEED)
    lines = []
    for i in range(400):
        fields = {
            "ts": fake.iso8601(),
            "level": rng.choice(["info", "info", "info", "warning"]),
            "event": rng.choice(["tool_call", "model_call", "task_started", "step_done"]),
            "task_id": fake.uuid4(),
            "latency_ms": round(rng.uniform(1, 900), 3),
            "tool": rng.choice(["lookup_order", "refund", "send_email"]),
        }
        if i % 6 == 0:
            fields["note"] = rng.choice(
                [f"customer {fake.name()} asked", f"reply to {fake.email()}",
                 f"call {fake.phone_number()}", f"ship to {fake.street_address()}"]
            )  # fmt: skip
        lines.append(json.dumps(fields))
    return lines


def p50_us(
    redactor: Redactor, chunks: list[str], rounds: int, model: Any = None
) -> dict[str, float]:
    """Wall-clock and CPU time (this thread's) per call: on a shared machine the CPU time
    is the steadier of the two (time spent waiting for a core is not in it). With the
    accurate tier's ``model``, its remembered spans are dropped before every call, so each
    call is a first reading (the model answers a text it read before from memory)."""
    for c in chunks[:3]:
        redactor.redact(c)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(rounds):
        for c in chunks:
            if model is not None:
                model.forget()
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            redactor.redact(c)
            cpu.append((time.thread_time_ns() - start_cpu) / 1000)
            wall.append((time.perf_counter_ns() - start) / 1000)
    wall.sort()
    return {
        "p50_us": round(statistics.median(wall), 1),
        "p99_us": round(wall[int(len(wall) * 0.99)], 1),
        "cpu_p50_us": round(statistics.median(cpu), 1),
        "samples": len(wall),
    }


def unseen_chunks(texts: list[str]) -> list[str]:
    """``texts`` in chunks of 4 KB, each text in one chunk at most (``chunks_4kb`` repeats
    its texts when they run out)."""
    out: list[str] = []
    buf: list[str] = []
    size = 0
    for text in texts:
        buf.append(text)
        size += len(text) + 1
        if size >= 4096:
            out.append("\n".join(buf)[:4096])
            buf, size = [], 0
    return out


def first_reading_us(redactor: Redactor, warm: list[str], chunks: list[str]) -> dict[str, float]:
    """Like :func:`p50_us`, but each chunk is read once, after ``warm`` (other text of the
    same kind): the fast tier remembers what it made of the capitalised runs and words it
    has read, which the repeated chunks of :func:`p50_us` all hit after their first round,
    and text a redactor meets is mostly new."""
    for c in warm:
        redactor.redact(c)
    wall: list[float] = []
    cpu: list[float] = []
    for c in chunks:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        redactor.redact(c)
        cpu.append((time.thread_time_ns() - start_cpu) / 1000)
        wall.append((time.perf_counter_ns() - start) / 1000)
    return {
        "p50_us": round(statistics.median(wall), 1),
        "cpu_p50_us": round(statistics.median(cpu), 1),
        "samples": len(wall),
    }


def _keep(output: pathlib.Path, key: str, found: dict[str, Any]) -> None:
    """Write ``found`` as ``redaction.<key>`` of ``output``, the rest of the file kept, and
    print it."""
    existing = json.loads(output.read_text()) if output.exists() else {}
    existing.setdefault("redaction", {})[key] = found
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(found, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--tune", action="store_true", help="print misses on the tuning part")
    parser.add_argument("--accurate", action="store_true", help="--tune the accurate tier")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--list-split",
        action="store_true",
        help="only recall on names in and not in the gazetteer's lists (redaction.list_split)",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also time the fast tier of git revision REV against this tree, interleaved",
    )
    parser.add_argument(
        "--compare-only", action="store_true", help="with --compare: only that, print it"
    )
    parser.add_argument(
        "--same-findings",
        metavar="REV",
        help="compare the fast tier's findings of git revision REV and of this tree, span for "
        "span, on the tuning data and the log lines (for changes meant to keep them); print",
    )
    parser.add_argument(
        "--native-bound",
        action="store_true",
        help="only what a native gazetteer pre-filter could save at best and what an "
        "automaton costs (redaction.native_prefilter)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tune_templates, eval_templates = _template_split()
    fast = Redactor(tier="fast")
    accurate = Redactor(tier="accurate")
    model = ner_model()
    tiers = {"fast": fast} | ({"accurate": accurate} if model is not None else {})
    count = 600 if args.quick else 3000
    if args.same_findings:
        t_pos, _, negs = secret_samples(10)
        corpora = {
            "tuning_sentences": [t for t, _ in pii_samples(tune_templates, count)],
            "tuning_negatives": negative_paragraphs()[0],
            "tuning_secrets": [line for _, line in t_pos] + negs[: len(negs) // 3],
            "log_lines": log_lines(),
        }
        evaluation = [t for t, _ in pii_samples(eval_templates, count * 4)]
        corpora |= {  # identity only: what differs is not shown
            "evaluation_sentences": evaluation[:count],
            "evaluation_chunks_unseen": unseen_chunks(evaluation[count:]),
            "evaluation_negatives": negative_paragraphs()[1],
        }
        hidden = frozenset(k for k in corpora if k.startswith("evaluation"))
        print(json.dumps(same_findings(args.same_findings, corpora, hidden), indent=2))
        return 0
    if args.tune:
        samples = pii_samples(tune_templates, count)
        tier = tiers["accurate" if args.accurate else "fast"]
        print(json.dumps(pii_quality(tier, samples, show=True), indent=2))
        print(json.dumps(negative_fp(tier, negative_paragraphs()[0], show=True), indent=2))
        t_pos, _, negs = secret_samples(10)
        print(json.dumps(secrets_quality(fast, t_pos, negs[: len(negs) // 3], True), indent=2))
        return 0
    if args.native_bound:
        unseen = unseen_chunks([t for t, _ in pii_samples(eval_templates, count * 4)[count:]])
        bound = {
            "prefilter_bound": prefilter_bound(unseen[:10], unseen[10:110]),
            "automaton": automaton_cost(unseen),
            "data": "unseen evaluation chunks of 4 KB (time_4kb_pii_prose_unseen's)",
            "quick": args.quick,
            "started_at": started_at,
            "commit": commit(),
            "load_average_1min_at_start": load_at_start,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "seconds": round(time.perf_counter() - started, 1),
        }
        _keep(args.output, "native_prefilter", bound)
        return 0
    samples = pii_samples(eval_templates, count)
    if args.list_split:
        split = list_split_run(tiers, samples)
        split.update(
            quick=args.quick,
            load_average_1min_at_end=round(os.getloadavg()[0], 2),
            seconds=round(time.perf_counter() - started, 1),
        )
        _keep(args.output, "list_split", split)
        return 0
    _, paragraphs = negative_paragraphs()
    if args.compare_only:
        corpora = {
            "pii_prose": chunks_4kb([t for t, _ in samples], 40),
            "technical": chunks_4kb(paragraphs, 40),
            "log_lines": chunks_4kb(log_lines(), 40),
        }
        print(json.dumps(compare_fast(args.compare, corpora, 2 if args.quick else 10), indent=2))
        return 0
    _, e_pos, negs = secret_samples(10 if args.quick else 30)
    negs = negs[len(negs) // 3 :]  # the first third is the tuning part
    prose = chunks_4kb([t for t, _ in samples], 40)
    # more sentences of the evaluation templates, past those measured above, for timings on
    # text the tier has not read (its first rounds' chunks warm it up)
    unseen = unseen_chunks([t for t, _ in pii_samples(eval_templates, count * 4)[count:]])
    logs = chunks_4kb(log_lines(), 40)
    technical = chunks_4kb(paragraphs, 40)
    result: dict[str, Any] = {
        "pii_corpus": (
            f"presidio-evaluator {metadata.version('presidio-evaluator')} "
            "PresidioSentenceFaker (en_US, lower_case_ratio 0.05), evaluation templates only"
        ),
        "split": {
            "by": "template",
            "seed": SPLIT_SEED,
            "tune_templates": len(tune_templates),
            "eval_templates": len(eval_templates),
            "generator_seed": GENERATOR_SEED,
            "eval_sentences": len(samples),
        },
        "caught_when": f">= {COVERED:.0%} of a span's letters and digits are redacted",
        "negative_corpus": (
            f"pydoc_data.topics paragraphs >= 200 chars, Python {platform.python_version()}, "
            "the evaluation two thirds"
        ),
        "secrets_corpus": (
            f"values drawn from credsweeper {metadata.version('credsweeper')} rules/config.yaml "
            f"({len(VENDOR_RULES)} vendor rules), evaluation samples; negatives: Faker "
            f"{metadata.version('faker')} identifiers"
        ),
        "ner_model": None if model is None else model.name,
        "tiers": {},
    }
    for name, redactor in tiers.items():
        result["tiers"][name] = {
            "pii": pii_quality(redactor, samples),
            "negatives": negative_fp(redactor, paragraphs),
            "secrets": secrets_quality(redactor, e_pos, negs),
        }
        rounds = 1 if args.quick else (2 if name == "accurate" else 10)  # the model is slow
        fresh = model if name == "accurate" else None
        result["tiers"][name]["time_4kb_pii_prose"] = p50_us(redactor, prose, rounds, fresh)
        result["tiers"][name]["time_4kb_technical"] = p50_us(redactor, technical, rounds, fresh)
        result["tiers"][name]["time_4kb_log_lines"] = p50_us(redactor, logs, rounds, fresh)
        if name == "fast":
            result["tiers"][name]["time_4kb_pii_prose_unseen"] = first_reading_us(
                redactor, unseen[:10], unseen[10:]
            )
    result["list_split"] = list_split_run(tiers, samples)
    if args.compare:
        n_rounds = 2 if args.quick else 10
        per_round = len(unseen) // n_rounds
        timed: dict[str, list[str] | list[list[str]]] = {
            "pii_prose": prose,
            "pii_prose_unseen": [
                unseen[r * per_round : (r + 1) * per_round] for r in range(n_rounds)
            ],
            "technical": technical,
            "log_lines": logs,
        }
        result["fast_tier_before_after"] = compare_fast(args.compare, timed, n_rounds)
        result["fast_tier_breakdown"] = breakdown(
            args.compare, unseen[:10], unseen[10:110], 2 if args.quick else 4
        )
        result["fast_tier_paired"] = paired(args.compare, unseen[:10], unseen[10:])
    result.update(
        {
            "quick": args.quick,
            "started_at": started_at,
            "commit": commit(),
            "load_average_1min_at_start": load_at_start,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    existing: dict[str, Any] = {}
    if args.output.exists():
        existing = json.loads(args.output.read_text())
    # the keys other scripts write into "redaction", each with its own run's metadata, stay
    previous = existing.get("redaction", {})
    result.update({k: previous[k] for k in OTHER_SCRIPTS_KEYS if k in previous})
    existing["redaction"] = result
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
