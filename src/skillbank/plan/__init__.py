"""Plans over library skills: beam search by usefulness × affordance, stored as chains."""
