"""Credential formats of the fast redaction tier: vendor token shapes and private keys.

Each pattern is the shape the vendor documents for its keys (a fixed prefix, a length, an
alphabet); ones without a prefix (Discord bot tokens, Twilio SIDs) are anchored by their
structure. A token is at least 20 characters of ``[\\w.+/=:-]``, so the scan first finds
such runs (there are few in prose or logs) and matches the alternation only inside them.
"""

from __future__ import annotations

import re

__all__ = ["CREDENTIAL_KINDS", "credential_spans"]

_B = r"[A-Za-z0-9_-]"  # the base64url alphabet most tokens use
_FORMATS: tuple[tuple[str, str], ...] = (
    (
        "jwt",
        r"eyJ[A-Za-z0-9_+/=-]{15,}(?:\.[A-Za-z0-9_+/=-]*){2,16}",
    ),
    (
        "aws_key",
        r"(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}"
        r"(?![A-Z0-9])",
    ),
    ("github_token", rf"(?:gh[pousr]_{_B}{{36,255}}|github_pat_[A-Za-z0-9_]{{22,255}})"),
    (
        "gitlab_token",
        rf"(?:gl(?:pat|dt|ptt|rt|rtr|soat|ffct|cbt|oas|imt|ft|wt|agent)-{_B}{{20,64}}"
        rf"(?:\.{_B}{{2,16}}){{0,2}}|GR1348941{_B}{{20,64}}|_gitlab_session={_B}{{20,}}"
        rf"(?:\.{_B}{{2,16}}){{0,2}})",
    ),
    (
        "slack_token",
        r"(?:xox[a-z]-[A-Za-z0-9-]{10,250}|xapp-[A-Za-z0-9-]{10,250}"
        r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+)",
    ),
    (
        "discord_token",
        rf"(?:https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/{_B}{{40,100}}"
        rf"|[MNO]{_B}{{23,27}}\.{_B}{{6,7}}\.{_B}{{27,40}})",
    ),
    ("stripe_key", r"(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,160}|whsec_[A-Za-z0-9]{24,})"),
    ("twilio_key", r"[A-Z]{2}[0-9a-fA-F]{32}(?![0-9A-Za-z])"),
    ("sendgrid_key", rf"SG\.{_B}{{16,32}}\.{_B}{{16,64}}"),
    ("npm_token", rf"npm_{_B}{{36,255}}"),
    ("pypi_token", rf"pypi-{_B}{{50,}}"),
    ("artifactory_token", rf"(?:AKCp{_B}{{10,}}|cmVmdGtu{_B}{{50,}})"),
    ("google_key", rf"(?:AIza{_B}{{35}}|GOCSPX-{_B}{{28}}|ya29\.{_B}{{20,}}|1//0{_B}{{60,}})"),
    ("anthropic_key", rf"sk-ant-[a-z]{{3,6}}\d{{2}}-{_B}{{20,}}"),
    ("openai_key", rf"sk-(?:proj-|svcacct-|admin-|or-v1-)?{_B}{{20,}}"),
    (
        "vendor_token",  # prefixes from the vendors' documentation, then the key body
        r"(?:hf_|dapi|lin_api_|sbp_(?:v0_)?|pul-|dckr_[op]at_|sntry[us]_|cf(?:at|ut|k)_|"
        r"tskey-[a-z]+-|rubygems_|figd_|pplx-|CCIPAT_|pscale_(?:tkn|oauth|pw)_|CFPAT-|"
        r"sq[apu]_|do[oprs]_v1_|shp(?:at|ca|pa|ss|tka)_|sq0[a-z]{3}-|EAAA|NRAK-|NRBR-|NRII-|"
        r"NRJS-|PMAK-|PMAT-|glc_|glsa_|hv[bsr]\.|ATATT3|ATBB|ATCTT3|BBDC-|dp\.(?:pt|st|sa|ct|"
        r"scim|audit)\.|tgp_v1_|xkeysib-|llx-|gsk_|xai-|ntn_|tvly-|tfp_|vcp_|nfp_|ph[acrsx]_|"
        r"nyk_v0_|waka_|RGAPI-|sgp_|cosmo_|oy2|da2-|LTAI|akab-|dnkey-|CLOJARS_|SWMTKN-1-|"
        r"SWMKEY-1-|key-|AGE-SECRET-KEY-1|dt0[a-z]\d{2}\.)[A-Za-z0-9_+/=.-]{15,}",
    ),
    ("mailchimp_key", rf"{_B}{{32}}-us\d{{1,2}}"),
    ("telegram_token", rf"\d{{8,10}}:{_B}{{30,}}"),
    ("age_key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
)
_CREDS = re.compile("|".join(f"(?P<{kind}>(?<![A-Za-z0-9]){p})" for kind, p in _FORMATS))
_PLAIN_RUN = re.compile(r"[0-9a-f:.+/=-]+|[0-9A-F:.+/=-]+|[0-9TZ:.+-]+")
_TOKENISH = re.compile(r"[\w.+/=:-]{20,}")
# a word whose only run of token characters is plain (a UUID, a hash, a timestamp, quoted or
# followed by a comma: most long words of a log line), dismissed without looking inside it
_PLAIN_WORD = re.compile(
    r"[^\w.+/=:-]*(?:[0-9a-f:.+/=-]+|[0-9A-F:.+/=-]+|[0-9TZ:.+-]+)[^\w.+/=:-]*"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,8000}?"
    r"(?:-----END[A-Z ]{0,20} PRIVATE KEY(?: BLOCK)?-----|\Z)"
    r"|PuTTY-User-Key-File-\d: [\s\S]{0,4000}?Private-MAC: [0-9a-f]+"
)
CREDENTIAL_KINDS = ("private_key", *(kind for kind, _ in _FORMATS))


def credential_spans(text: str) -> list[tuple[int, int, str]]:
    """Every vendor token and private key in ``text`` as (start, end, kind)."""
    spans: list[tuple[int, int, str]] = []
    if "-----BEGIN" in text or "PuTTY-User-Key" in text:
        spans += [(m.start(), m.end(), "private_key") for m in _PRIVATE_KEY.finditer(text)]
    pos = 0
    for word in [w for w in text.split() if len(w) >= 20]:  # a token is inside such a word
        if _PLAIN_WORD.fullmatch(word):
            continue  # its one run would be dismissed below (a substring of it is plain too)
        at = text.find(word, pos)
        pos = at + len(word)
        for run in _TOKENISH.finditer(text, at, pos):
            if _PLAIN_RUN.fullmatch(text, run.start(), run.end()):
                continue  # a UUID, a hash, a timestamp: no vendor format is only these
            for m in _CREDS.finditer(text, run.start(), run.end()):
                spans.append((m.start(), m.end(), m.lastgroup or "credential"))
    return spans
