"""beatedit models: reward model, policy, PPO / DPO / BC training loops (framework-free torch)."""
