"""A corpus of secrets in the forms they take in real logs and spans, each with the part that must never leave.

Used by the redaction unit tests and by the end-to-end test that sends every one of them through a running
reference service to all six sinks. `leak` is the distinctive text of the secret itself (what a leak check
searches for); `text` is how it appears (a header, a URL, a config line, JSON...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Secret:
    kind: str
    text: str
    leak: str


CORPUS = (
    Secret("bearer header", "Authorization: Bearer ya1Qx9bearerTOKENvalue000", "ya1Qx9bearerTOKENvalue000"),
    Secret("bearer letters only", "auth with Bearer abcdefghijklmnopqrs", "abcdefghijklmnopqrs"),
    Secret("basic auth header", "Authorization: Basic cmFnOmJhc2ljUGFzczAwMQ==", "cmFnOmJhc2ljUGFzczAwMQ"),
    Secret(
        "basic auth alone", "sent Basic YWxhZGRpbjpvcGVuc2VzYW1lQkFTSUM= upstream", "YWxhZGRpbjpvcGVuc2VzYW1lQkFTSUM"
    ),
    Secret("openai key", "using sk-proj-OPENAIkey0123456789abcdefXYZ", "OPENAIkey0123456789abcdefXYZ"),
    Secret("anthropic key", "key=sk-ant-api03-ANTHROPICkey0123456789", "ANTHROPICkey0123456789"),
    Secret("stripe live key", "stripe sk_live_51STRIPEkey0123456789abc", "51STRIPEkey0123456789abc"),
    Secret("stripe webhook secret", "whsec_STRIPEwebhook0123456789ab", "STRIPEwebhook0123456789ab"),
    Secret("slack bot token", "slack xoxb-1234567890-SLACKtoken0123", "SLACKtoken0123"),
    Secret("slack webhook", "https://hooks.slack.com/services/T000/B000/SLACKhookSECRET", "SLACKhookSECRET"),
    Secret("google api key", "maps AIzaSyGOOGLEkey0123456789abcdefghijklmn", "GOOGLEkey0123456789abcdefghijklmn"),
    Secret("google oauth token", "ya29.GOOGLEoauthTOKEN0123456789abc", "GOOGLEoauthTOKEN0123456789abc"),
    Secret("github token", "ghp_GITHUBtoken0123456789abcdefghijklmn", "GITHUBtoken0123456789abcdefghijklmn"),
    Secret("github fine-grained", "github_pat_11GITHUBpat0123456789_abcdefghijklmnop", "11GITHUBpat0123456789"),
    Secret("aws access key id", "id AKIAAWSKEYID01234567 used", "AKIAAWSKEYID01234567"),
    Secret(
        "aws secret in config", "aws_secret_access_key = AWSsecretKEY0123456789/abcdefghij", "AWSsecretKEY0123456789"
    ),
    Secret("jwt", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJKV1RzdWJqZWN0In0.JWTsignature0123456", "JWTsignature0123456"),
    Secret(
        "pem private key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpemPRIVATEkeyBODY0123\n-----END RSA PRIVATE KEY-----",
        "MIIEpemPRIVATEkeyBODY0123",
    ),
    Secret(
        "azure connection string",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=AZUREaccountKEY0123+/==;EndpointSuffix=x",
        "AZUREaccountKEY0123",
    ),
    Secret("url userinfo", "postgresql://rag:URLpassword0123@db:5432/obs", "URLpassword0123"),
    Secret("password k=v", "connect password=KVpassword0123 host=db", "KVpassword0123"),
    Secret("password k: v", "password: COLONpassword0123", "COLONpassword0123"),
    Secret("password in json", '{"user": "rag", "password": "JSON password 0123"}', "JSON password 0123"),
    Secret("token in json", '{"api_key": "JSONapiKEY0123"}', "JSONapiKEY0123"),
    Secret("pgpassword", "PGPASSWORD=PGpassword0123 psql -h db", "PGpassword0123"),
    Secret("client secret in query", "GET /cb?code=1&client_secret=CLIENTsecret0123&x=1", "CLIENTsecret0123"),
    Secret("refresh token in query", "/oauth?refresh_token=REFRESHtoken0123", "REFRESHtoken0123"),
    Secret(
        "signed s3 url",
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIDCRED0123%2F20240101&X-Amz-Signature=AMZsignature0123",
        "AMZsignature0123",
    ),
    Secret(
        "azure sas signature", "https://a.blob.core.windows.net/c/b?sv=2020&sig=SASsignature0123", "SASsignature0123"
    ),
    Secret("langsmith key", "LANGSMITH_API_KEY is lsv2_pt_LANGSMITHkey0123456789_ab", "LANGSMITHkey0123456789"),
    Secret("hugging face token", "hf_HUGGINGFACEtoken0123456789abcdefgh", "HUGGINGFACEtoken0123456789"),
    Secret("secret k=v", "export APP_SECRET=APPsecret0123", "APPsecret0123"),
)
