"""Server-rendered pages for the clinical safety officer: sign in, review a candidate's dossier,
sign a decision, and read the history of decisions, promotions and rollbacks."""
