#!/usr/bin/env python3
"""Write a synthetic population of Organizations and OrganizationMembers as one YAML stream.

    python3 scripts/gen-population.py --orgs 1000 --members 5 > /tmp/population.yaml

Used for one-off timing of `apply`; every org has an inline budget, every member a new user.
"""
import argparse
import sys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--orgs", type=int, default=1000)
    p.add_argument("--members", type=int, default=5, help="members per organization")
    p.add_argument("--namespace", default="bench")
    a = p.parse_args()
    out = sys.stdout
    for o in range(a.orgs):
        out.write(
            f"---\napiVersion: litellm.dev/v1alpha1\nkind: Organization\n"
            f"metadata: {{name: org-{o}, namespace: {a.namespace}}}\n"
            f"spec: {{models: [gpt-4o], budget: {{maxBudget: {100 + o}, budgetDuration: 30d}}}}\n"
        )
        for m in range(a.members):
            out.write(
                f"---\napiVersion: litellm.dev/v1alpha1\nkind: OrganizationMember\n"
                f"metadata: {{name: org-{o}-m{m}, namespace: {a.namespace}}}\n"
                f"spec: {{organizationRef: {{name: org-{o}}}, user: {{email: user{m}-org{o}@example.com}}, "
                f"role: internal_user, maxBudgetInOrganization: 10}}\n"
            )


if __name__ == "__main__":
    main()
