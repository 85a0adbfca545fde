//! Flows and races of the switch, driven with fed-in time and scripted SIP events.
