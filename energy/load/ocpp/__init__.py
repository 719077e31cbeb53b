"""The OCPP 2.0.1 door: the CSMS server process (server), its station handlers (handlers),
MeterValues as readings (meter_values), commands out (commands) and a simulated station
(simulator). docs/load.md, "OCPP"."""
