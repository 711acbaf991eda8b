"""Sign AWS MSK IAM tokens with AWS's own Python signer at given times, for kcon's tests.

Reads one JSON object on stdin:
  {"cases": [{"access_key": "AKID...", "secret_key": "...", "session_token": "..." | null,
              "region": "eu-west-1", "time": <seconds since the epoch, UTC>}, ...]}
and prints
  {"tokens": [{"token": "<base64url>", "expiry_ms": <ms since the epoch>}, ...]}
each made by aws-msk-iam-sasl-signer-python's generate_auth_token_from_credentials_provider
with those credentials, botocore's clock set to that time while it signs.
"""

import datetime
import json
import sys

import botocore.auth
from botocore.credentials import CredentialProvider, Credentials
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider


class Fixed(CredentialProvider):
    def __init__(self, case):
        super().__init__()
        self.case = case

    def load(self):
        return Credentials(self.case["access_key"], self.case["secret_key"],
                           self.case.get("session_token"))


def main():
    request = json.load(sys.stdin)
    tokens = []
    for case in request["cases"]:
        at = datetime.datetime.fromtimestamp(case["time"], tz=datetime.timezone.utc)
        # botocore.auth takes the signing time from get_current_datetime: naive UTC.
        botocore.auth.get_current_datetime = lambda *args, at=at, **kwargs: at.replace(tzinfo=None)
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            case["region"], Fixed(case))
        tokens.append({"token": token, "expiry_ms": expiry_ms})
    json.dump({"tokens": tokens}, sys.stdout)


main()
