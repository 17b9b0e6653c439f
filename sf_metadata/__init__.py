"""Salesforce knowledge with no I/O: ids, the Outbound Message model and its SOAP
envelope, the User to agent mapping, the provisioning decision, metadata names."""
