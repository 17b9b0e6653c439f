"""The receiver: a Starlette app that takes Salesforce Outbound Messages, applies them to
the agent store in one transaction, and answers with the SOAP Ack."""
