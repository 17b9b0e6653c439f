"""The deployer: renders the User Outbound Message and its trigger (Workflow Rule or
record-triggered Flow) from Jinja templates and deploys them through the Metadata API."""
