"""Header names carried by every agentid message on NATS."""

SENDER = "Agentid-Sender"            # SPIFFE ID or DID of the signer
KEY_ID = "Agentid-Key-Id"            # RFC 7638 thumbprint of the signing key
TIMESTAMP = "Agentid-Timestamp"      # unix time in milliseconds, decimal
SIGNATURE = "Agentid-Signature"      # base64url raw signature over the signing input
MSG_ID = "Nats-Msg-Id"               # unique id; JetStream de-duplicates on it
ERROR = "Agentid-Error"              # error code on error replies
SERVICE_ERROR = "Nats-Service-Error"            # NATS micro convention: description
SERVICE_ERROR_CODE = "Nats-Service-Error-Code"  # NATS micro convention: numeric status
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
