"""Verifies webhook deliveries with the Standard Webhooks reference library.

Reads a JSON document from standard input: {"secret": "whsec_…", "deliveries": [{"headers":
{…}, "body": "…"}, …]} and checks each delivery's signature with
`standardwebhooks.Webhook(secret).verify(body, headers)`. Prints one line per delivery,
`ok WEBHOOK-ID` or `bad WEBHOOK-ID: REASON`, and exits 1 when any is bad.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    document = json.load(sys.stdin)
    webhook = Webhook(document["secret"])
    bad = 0
    for delivery in document["deliveries"]:
        headers = delivery["headers"]
        ident = headers.get("webhook-id", "?")
        try:
            webhook.verify(delivery["body"], headers)
            print(f"ok {ident}")
        except WebhookVerificationError as error:
            bad += 1
            print(f"bad {ident}: {error}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
