"""The Workspace's rules and its one planning call, shared by admission, the controller and `kaito render`."""
