"""The cascade's closing summary as text: one line a figure, the operators' actions, problems."""

from __future__ import annotations

from typing import Any


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"=== cascade ({', '.join(summary['stages'])}), mode {summary['mode']}, "
        f"protections {', '.join(summary['protections']) or 'none'}"
    ]
    skip = {
        "mode",
        "protections",
        "stages",
        "operator_actions",
        "launches",
        "marks_s",
        "problems",
        "c1",
        "report",
        "ec2_status",
    }
    for key, value in summary.items():
        if key not in skip:
            lines.append(f"{key:<24} {value}")
    for action in summary["operator_actions"]:
        lines.append(
            f"{'operator action':<24} +{action['at_s']:.1f}s {action['action']} "
            f"{action['target']} {action['detail']}".rstrip()
        )
    if "report" in summary:
        lines.append(f"report: {summary['report']}")
    for problem in summary["problems"]:
        lines.append(f"!! {problem}")
    return "\n".join(lines)
