"""Sign AWS MSK IAM tokens with AWS's own Python signer at given times, for kcon's tests.

Reads one JSON object on stdin:
  {"cases": [{"access_key": "AKID...", "secret_key": "...", "session_token": "..." | null,
              "region": "eu-west-1", "time": <seconds since the epoch, UTC>,
              "role_arn": "arn:aws:iam::...:role/..." | absent, "sts": "http://..." | absent},
             ...]}
and prints
  {"tokens": [{"token": "<base64url>", "expiry_ms": <ms since the epoch>}, ...]}
each made by aws-msk-iam-sasl-signer-python, botocore's clock set to that time while it signs:
with those credentials (generate_auth_token_from_credentials_provider), or, with "role_arn",
with the credentials of that role as STS at "sts" answers its AssumeRole, asked with those
credentials (generate_auth_token_from_role_arn, the signer's own path to assumed credentials).
"""

import datetime
import json
import os
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
        if "role_arn" in case:
            os.environ.update({
                "AWS_ACCESS_KEY_ID": case["access_key"],
                "AWS_SECRET_ACCESS_KEY": case["secret_key"],
                "AWS_ENDPOINT_URL_STS": case["sts"],
                "AWS_DEFAULT_REGION": case["region"],
                "AWS_EC2_METADATA_DISABLED": "true",
            })
            os.environ.pop("AWS_SESSION_TOKEN", None)
            os.environ.pop("AWS_PROFILE", None)
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_role_arn(
                case["region"], case["role_arn"])
        else:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
                case["region"], Fixed(case))
        tokens.append({"token": token, "expiry_ms": expiry_ms})
    json.dump({"tokens": tokens}, sys.stdout)


main()
