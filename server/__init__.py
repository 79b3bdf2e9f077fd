"""The server side: collector/ (gate events from MQTT, validated, stored, acknowledged), store/
(the database), accounts/ (users, tokens, sessions), dashboard/ (the web app and its reports);
app.py wires every server process (`build_server`)."""
