//! Renders the judge's verdicts: terminal table, Markdown with a picture, JSON, JUnit.
