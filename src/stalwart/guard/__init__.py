"""Guard: secrets, input validation, injection defense, tool-call authorization (principal,
rules, transitive provenance), redaction, budgets.

See ``docs/security.md``. Layer 1: imports only errors, config, observe and clock.
"""

from stalwart.guard._approvals import Approval, ApprovalQueue
from stalwart.guard._authz import (
    Principal,
    Resource,
    Rule,
    forbid,
    owned,
    parse_condition,
    permit,
)
from stalwart.guard._budget import Budget, Reservation, SpendLedger, estimate_tokens
from stalwart.guard._canon import canonical, same_value
from stalwart.guard._corpus import (
    Payload,
    benign_texts,
    heldout_injections,
    injection_payloads,
    labelled_injections,
    redaction_corpus,
)
from stalwart.guard._detect import Detection, InjectionDetector
from stalwart.guard._freetext import TextCheck
from stalwart.guard._hashicorp import HashiCorpVault
from stalwart.guard._inputs import InputLimits, NormalizedText, normalize_text, validate_input
from stalwart.guard._policy import RateLimit, Security
from stalwart.guard._principal import PRINCIPAL_KEY, split_input, wrap_input
from stalwart.guard._redact import (
    Finding,
    OutputPolicy,
    Redactor,
    default_redactor,
    iban_ok,
    luhn_ok,
    output_redactor,
    warm_fast_tier,
    warm_output_redactor,
)
from stalwart.guard._scan import SecretFinding, scan_for_secrets, secrets_posture
from stalwart.guard._sealed import remember_secret, seal, sealed_names, unseal
from stalwart.guard._secrets import (
    SECRET_SCHEME,
    EnvProvider,
    LocalVault,
    SecretKey,
    SecretProvider,
    SecretResolver,
    is_secret_ref,
    learn_vault_secrets,
    provider_from_env,
    resolve_setting,
    secret_name,
)
from stalwart.guard._taint import (
    ArgRule,
    Decision,
    Origin,
    Provenance,
    TaintPolicy,
    ToolRule,
    policy_from_data,
)
from stalwart.guard._wire import RedactingEventBus, install_redactor

__all__ = [
    "PRINCIPAL_KEY",
    "SECRET_SCHEME",
    "Approval",
    "ApprovalQueue",
    "ArgRule",
    "Budget",
    "Decision",
    "Detection",
    "EnvProvider",
    "Finding",
    "HashiCorpVault",
    "InjectionDetector",
    "InputLimits",
    "LocalVault",
    "NormalizedText",
    "Origin",
    "OutputPolicy",
    "Payload",
    "Principal",
    "Provenance",
    "RateLimit",
    "RedactingEventBus",
    "Redactor",
    "Reservation",
    "Resource",
    "Rule",
    "SecretFinding",
    "SecretKey",
    "SecretProvider",
    "SecretResolver",
    "Security",
    "SpendLedger",
    "TaintPolicy",
    "TextCheck",
    "ToolRule",
    "benign_texts",
    "canonical",
    "default_redactor",
    "estimate_tokens",
    "forbid",
    "heldout_injections",
    "iban_ok",
    "injection_payloads",
    "install_redactor",
    "is_secret_ref",
    "labelled_injections",
    "learn_vault_secrets",
    "luhn_ok",
    "normalize_text",
    "output_redactor",
    "owned",
    "parse_condition",
    "permit",
    "policy_from_data",
    "provider_from_env",
    "redaction_corpus",
    "remember_secret",
    "resolve_setting",
    "same_value",
    "scan_for_secrets",
    "seal",
    "sealed_names",
    "secret_name",
    "secrets_posture",
    "split_input",
    "unseal",
    "validate_input",
    "warm_fast_tier",
    "warm_output_redactor",
    "wrap_input",
]
