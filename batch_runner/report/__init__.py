"""Human and machine views of a run: report.html and exports."""
