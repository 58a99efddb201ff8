"""Every prompt the project sends to a model, versioned, in one package: task, judge, oracle."""
