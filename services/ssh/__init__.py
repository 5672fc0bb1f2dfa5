"""The SSH gateway: ssh/scp/sftp/port forwarding into running environments, and its key page."""
