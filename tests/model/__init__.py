"""Model tests: reward model, policy, behaviour cloning, PPO and DPO learn on tiny problems."""
