"""What people see: live progress of a run, the status table, the HTML report."""
