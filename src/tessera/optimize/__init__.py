"""Parameter optimisation that does not fool you: Bayesian search (Optuna), walk-forward
optimisation, and the statistics that say how much of the best backtest is luck (Deflated
Sharpe Ratio, Probability of Backtest Overfitting, Monte Carlo resampling, parameter
sensitivity). Nothing is imported here, so ``import tessera`` stays fast: optuna and the
heavier modules load only when a submodule is imported.
"""
