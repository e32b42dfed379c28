"""envd: the guest agent that runs inside every sandbox microVM."""

# The upstream contract version this daemon implements (spec/envd.md §10.1). Control planes record it
# and SDK feature gates compare against it, so it is the upstream number, not our package version.
ENVD_VERSION = "0.6.13"
