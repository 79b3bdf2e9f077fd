"""The preview's wire contract (issue 17, "Aim and focus"): its topics, the server's request
and the gate's annotated frames."""
